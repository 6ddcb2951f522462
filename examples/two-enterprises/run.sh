#!/usr/bin/env bash
# Two enterprises, operated from the shell: every step is a `connector` CLI command.
# Usage: examples/two-enterprises/run.sh   (from the repository root, after `make demo` or `make test`
# created .venv). Leaves its files in a temporary directory, printed at the end.
set -euo pipefail
BIN="${BIN:-$(pwd)/.venv/bin/connector}"
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

"$BIN" init --dir "$WORK/acme" --name acme-logistics --public-port 19181 --management-port 19182 --dev
"$BIN" init --dir "$WORK/bolt" --name bolt-analytics --public-port 19281 --management-port 19282 --dev
"$BIN" --config "$WORK/acme/connector.toml" serve 2>"$WORK/acme.log" &
"$BIN" --config "$WORK/bolt/connector.toml" serve 2>"$WORK/bolt.log" &
ACME=("$BIN" --config "$WORK/acme/connector.toml")
BOLT=("$BIN" --config "$WORK/bolt/connector.toml")
for _ in $(seq 100); do "${ACME[@]}" datasets list >/dev/null 2>&1 && "${BOLT[@]}" datasets list >/dev/null 2>&1 && break; sleep 0.1; done

head -c 4000000 /dev/urandom > "$WORK/shipments.csv"
cat > "$WORK/offer.json" <<'JSON'
{"permission": [{"action": "use",
  "constraint": [{"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["logistics-planning"]}],
  "duty": [{"action": "compensate", "constraint": [
    {"leftOperand": "payAmount", "operator": "eq", "rightOperand": 50},
    {"leftOperand": "unit", "operator": "eq", "rightOperand": "https://w3id.org/tdsc/v1/perGB"},
    {"leftOperand": "https://w3id.org/tdsc/v1/currency", "operator": "eq", "rightOperand": "EUR"}]}]}]}
JSON
"${ACME[@]}" datasets add --id urn:acme:shipments --title "Shipments 2026" --file "$WORK/shipments.csv" --policy "$WORK/offer.json" >/dev/null
"${BOLT[@]}" catalog fetch http://127.0.0.1:19181/dsp/2025-1 | head -20
NEG=$("${BOLT[@]}" negotiations start http://127.0.0.1:19181/dsp/2025-1 urn:acme:shipments --purpose logistics-planning)
"${BOLT[@]}" negotiations wait "$NEG"
"${BOLT[@]}" negotiations show "$NEG"
AGR=$("${BOLT[@]}" negotiations show "$NEG" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["agreement_id"])')
TP=$("${BOLT[@]}" transfers start "$AGR")
"${BOLT[@]}" transfers wait "$TP"
echo "provider file: $(sha256sum "$WORK/shipments.csv" | cut -d' ' -f1)"

# What was delivered, provably: the signed metering chain, checked offline with the two public
# keys only, and the invoice computed from it.
"${ACME[@]}" metering export --agreement "$AGR" --out "$WORK/chain.jsonl"
python3 -c 'import urllib.request,sys; sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1]).read())' http://127.0.0.1:19181/.well-known/did.json > "$WORK/acme-did.json"
python3 -c 'import urllib.request,sys; sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1]).read())' http://127.0.0.1:19281/.well-known/did.json > "$WORK/bolt-did.json"
"$BIN" metering verify "$WORK/chain.jsonl" --provider-key "$WORK/acme-did.json" --consumer-key "$WORK/bolt-did.json"
"${ACME[@]}" billing invoice --agreement "$AGR" --period "$(date -u +%Y-%m)" --format csv
echo "work dir: $WORK"
