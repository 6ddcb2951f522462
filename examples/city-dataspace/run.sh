#!/usr/bin/env bash
# A city data space, operated from the shell: an authority and three member connectors.
#   onboarding -> credentials -> federated search -> negotiation under a membership-only
#   policy -> transfer -> a revoked member refused, with the reason.
# Usage: examples/city-dataspace/run.sh   (from the repository root, after `make demo` or
# `make test` created .venv and .tools/bin/opa). Set PORT_BASE to move the ports (default 19400).
# Leaves its files in a temporary directory, printed at the end.
set -euo pipefail
BIN="${BIN:-$(pwd)/.venv/bin/connector}"
export OPA_BIN="${OPA_BIN:-$(pwd)/.tools/bin/opa}"
WORK="$(mktemp -d)"
P="${PORT_BASE:-19400}"
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
step() { printf '\n== %s\n' "$*"; }

AUTH_URL="http://127.0.0.1:$((P + 1))"
AUTH_DID="did:web:127.0.0.1%3A$((P + 1))"
"$BIN" init --dir "$WORK/authority" --name city-authority --public-port $((P + 1)) \
    --management-port $((P + 2)) --dev --authority --issuer-url "$AUTH_URL" >/dev/null
# the authority also runs the federated catalog, from its own registry (crawled on demand here)
cat >> "$WORK/authority/connector.toml" <<TOML
federated_catalog = true
registry_url = "$AUTH_URL/authority/v1/participants"
federated_crawl_seconds = 0
TOML
i=0
for name in transit statistics research; do
    i=$((i + 1))
    "$BIN" init --dir "$WORK/$name" --name "$name" --public-port $((P + 10 * i + 1)) \
        --management-port $((P + 10 * i + 2)) --dev --issuer-url "$AUTH_URL" \
        --trusted-issuer "$AUTH_DID" --require-membership >/dev/null
    # a revocation takes effect within this many seconds (default 30)
    echo "credential_cache_seconds = 1" >> "$WORK/$name/connector.toml"
done
for name in authority transit statistics research; do
    "$BIN" --config "$WORK/$name/connector.toml" serve 2>"$WORK/$name.log" &
done
AUTH=("$BIN" --config "$WORK/authority/connector.toml")
TRANSIT=("$BIN" --config "$WORK/transit/connector.toml")
STATS=("$BIN" --config "$WORK/statistics/connector.toml")
RESEARCH=("$BIN" --config "$WORK/research/connector.toml")
for node in AUTH TRANSIT STATS RESEARCH; do
    declare -n cmd="$node"
    for _ in $(seq 200); do "${cmd[@]}" datasets list >/dev/null 2>&1 && break; sleep 0.1; done
done

step "onboarding: the authority registers each member's DID and attributes"
did() { echo "did:web:127.0.0.1%3A$((P + 10 * $1 + 1))"; }
"${AUTH[@]}" authority onboard "$AUTH_DID" --name "City portal" --organisation "City of Example" --role catalog >/dev/null
"${AUTH[@]}" authority onboard "$(did 1)" --name "City Transit" --organisation "City Transit GmbH" --role transit --region DE-BE >/dev/null
"${AUTH[@]}" authority onboard "$(did 2)" --name "Statistics Office" --organisation "Statistics Office" --role statistics --region DE-BE >/dev/null
"${AUTH[@]}" authority onboard "$(did 3)" --name "Urban Research" --organisation "Urban Research Institute" --role research --region DE-BE >/dev/null
"${AUTH[@]}" authority participants
for node in AUTH TRANSIT STATS RESEARCH; do
    declare -n cmd="$node"
    "${cmd[@]}" credentials request >/dev/null
done
echo "research holds:"
"${RESEARCH[@]}" credentials list

step "publishing: members describe their datasets with keywords and themes"
head -c 2000000 /dev/urandom | base64 > "$WORK/ridership.csv"
head -c 500000 /dev/urandom | base64 > "$WORK/population.csv"
cat > "$WORK/members-only.json" <<'JSON'
{"permission": [{"action": "use", "constraint": [
  {"leftOperand": "https://w3id.org/tdsc/v1/membership", "operator": "eq", "rightOperand": true},
  {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["urban-planning", "research"]}]}]}
JSON
"${TRANSIT[@]}" datasets add --id urn:transit:ridership --title "Bus ridership per stop 2026" \
    --description "Boardings and alightings per stop and hour" --keyword ridership --keyword bus \
    --theme mobility --file "$WORK/ridership.csv" --policy "$WORK/members-only.json" >/dev/null
"${TRANSIT[@]}" datasets add --id urn:transit:stops --title "Bus stops" --keyword bus \
    --theme mobility --file "$WORK/ridership.csv" >/dev/null
"${STATS[@]}" datasets add --id urn:stats:population --title "Population by district" \
    --keyword population --theme demography --file "$WORK/population.csv" \
    --policy "$WORK/members-only.json" >/dev/null

step "federated catalog: the portal crawls every registered member, then answers searches"
"${AUTH[@]}" catalog crawl
"${AUTH[@]}" catalog search ridership
"${AUTH[@]}" catalog search --theme demography
"${AUTH[@]}" catalog search --publisher "City Transit"

step "negotiation under the membership-only policy, then the transfer"
NEG=$("${RESEARCH[@]}" negotiations start "http://127.0.0.1:$((P + 11))/dsp/2025-1" urn:transit:ridership --purpose urban-planning)
"${RESEARCH[@]}" negotiations wait "$NEG"
AGR=$("${RESEARCH[@]}" negotiations show "$NEG" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["agreement_id"])')
TP=$("${RESEARCH[@]}" transfers start "$AGR")
"${RESEARCH[@]}" transfers wait "$TP"
echo "provider file: $(sha256sum "$WORK/ridership.csv" | cut -d' ' -f1)"

step "revocation: the statistics office leaves; transit refuses it, saying why"
"${AUTH[@]}" authority revoke "$(did 2)" --reason "left the data space" >/dev/null
"${AUTH[@]}" authority participants
sleep 1.5
if OUT=$("${STATS[@]}" catalog fetch "http://127.0.0.1:$((P + 11))/dsp/2025-1" 2>&1); then
    echo "expected a refusal, got a catalog" >&2
    exit 1
fi
echo "$OUT"
echo "$OUT" | grep -q "was revoked by its issuer"
"${AUTH[@]}" catalog crawl
echo "after the next crawl the revoked member's datasets are gone:"
"${AUTH[@]}" catalog search population
echo "work dir: $WORK"
