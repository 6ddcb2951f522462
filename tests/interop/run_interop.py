"""Interop suite: our connector against a stock Eclipse EDC 0.15.1 (DSP 2025-1, DCP identity).

Starts our data space authority and connectors (tests/harness.py) and two EDC runtimes
(tests/interop/edc: control plane + embedded data plane + the identity test double, one JVM
each), then runs each step and prints one line per step:

    PASS|FAIL|EDC-LIMIT <step> <seconds>s <evidence>

and `N passed, N failed` at the end; exits non-zero on any FAIL. EDC-LIMIT marks a failure
caused by EDC 0.15.1 itself (with the evidence), not by us. Run from the repository root:

    mvn -q -f tests/interop/edc/pom.xml package dependency:copy-dependencies
    python tests/interop/run_interop.py
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import serialization  # noqa: E402

from connector.identity.did import did_from_url  # noqa: E402
from connector.identity.keys import KeyPair, b64url, generate  # noqa: E402
from connector.identity.tokens import TokenIssuer  # noqa: E402
from connector.mgmt_client import ApiError  # noqa: E402
from connector.ports import free_port  # noqa: E402
from tests.harness import ConnectorProcess, wait_for  # noqa: E402

EDC_DIR = Path(__file__).resolve().parent / "edc"
EDC_NS = "https://w3id.org/edc/v0.0.1/ns/"
ODRL = "http://www.w3.org/ns/odrl/2/"
DCAT = "http://www.w3.org/ns/dcat#"
DSP_PROTOCOL = "dataspace-protocol-http:2025-1"
API_KEY = "interop-key"
STEP_TIMEOUT = 25.0
REPEAT = 10
# EDC's public data-plane API (what serves a pull): Maven Central lists 0.11.0-0.13.0 of it,
# no 0.15.1 (its maven-metadata.xml, read when this suite was written)
PUBLIC_API_MODULE = "data-plane-public-api-v2"


class StepFailed(Exception):
    """A step failed; the message is the evidence printed."""


class EdcLimit(Exception):
    """A step failed because of EDC 0.15.1 itself; the message is the evidence."""


# ------------------------------------------------------------------------------------------
# EDC runtime
# ------------------------------------------------------------------------------------------


class EdcRuntime:
    """One stock EDC 0.15.1 JVM (control plane + data plane + identity test double)."""

    def __init__(self, root: Path, name: str, authority_did: str) -> None:
        self.name = name
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.identity_port = free_port()
        self.ports = {k: free_port() for k in ("api", "mgmt", "dsp", "control", "version")}
        self.did = did_from_url(f"http://127.0.0.1:{self.identity_port}")
        self.keys = generate()
        self.credentials_file = self.dir / "credentials.txt"
        key_file = self.dir / "key.jwk"
        raw = self.keys.private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        key_file.write_text(json.dumps(self.keys.public_jwk() | {"d": b64url(raw)}))
        key_file.chmod(0o600)
        p = self.ports
        props = {
            "edc.participant.id": self.did,
            "edc.iam.issuer.id": self.did,
            "edc.hostname": "127.0.0.1",
            # did:web over http on loopback (WebDidExtension, 0.15.1)
            "edc.iam.did.web.use.https": "false",
            "edc.iam.trusted-issuer.authority.id": authority_did,
            # ask status lists as JSON first (BaseRevocationListService parses JSON only)
            "edc.iam.credential.revocation.mimetype": "application/vc+ld+json,application/json",
            "web.http.port": p["api"],
            "web.http.path": "/api",
            "web.http.management.port": p["mgmt"],
            "web.http.management.path": "/management",
            "web.http.protocol.port": p["dsp"],
            "web.http.protocol.path": "/protocol",
            "web.http.control.port": p["control"],
            "web.http.control.path": "/control",
            "web.http.version.port": p["version"],
            "web.http.version.path": "/version",
            "edc.dsp.callback.address": f"http://127.0.0.1:{p['dsp']}/protocol",
            "web.http.management.auth.type": "tokenbased",
            "web.http.management.auth.key": API_KEY,
            "edc.transfer.proxy.token.signer.privatekey.alias": "interop-key",
            "edc.transfer.proxy.token.verifier.publickey.alias": "interop-key-public",
            "interop.identity.port": self.identity_port,
            "interop.key.file": key_file,
            "interop.credentials.file": self.credentials_file,
            "interop.dsp.url": self.dsp,
        }
        self.config = self.dir / "edc.properties"
        self.config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        self.log_path = self.dir / "edc.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def dsp(self) -> str:
        return f"http://127.0.0.1:{self.ports['dsp']}/protocol/2025-1"

    @property
    def key_pair(self) -> KeyPair:
        return self.keys

    def start(self) -> None:
        classpath = f"{EDC_DIR / 'target' / 'dependency'}/*:{EDC_DIR / 'target' / 'classes'}"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    "java",
                    "-Xmx768m",
                    "-XX:TieredStopAtLevel=1",
                    f"-Dedc.fs.config={self.config}",
                    "-cp",
                    classpath,
                    "org.eclipse.edc.boot.system.runtime.BaseRuntime",
                    # DEBUG: EDC says why it refuses a token only at this level
                    "--log-level=DEBUG",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"EDC {self.name} exited: {self.log_tail()}")
            if "Runtime " in self.log_text() and " ready" in self.log_text():
                return
            time.sleep(0.2)
        raise RuntimeError(f"EDC {self.name} did not become ready: {self.log_tail()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, n: int = 1500) -> str:
        return self.log_text()[-n:]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    # management API -----------------------------------------------------------------------

    def call(self, method: str, path: str, body: Any = None) -> Any:
        url = f"http://127.0.0.1:{self.ports['mgmt']}/management{path}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("X-Api-Key", API_KEY)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                text = answer.read().decode()
        except urllib.error.HTTPError as exc:
            raise StepFailed(
                f"EDC {self.name} management {method} {path} -> {exc.code}: "
                f"{exc.read().decode(errors='replace')[:600]}"
            ) from exc
        return json.loads(text) if text else None

    def publish(self, asset_id: str, source_url: str) -> None:
        """An HttpData asset, an open policy and a contract definition offering it."""
        self.call("POST", "/v3/assets", {
            "@context": {"@vocab": EDC_NS}, "@id": asset_id,
            "properties": {"name": asset_id, "contenttype": "application/octet-stream"},
            "dataAddress": {"type": "HttpData", "baseUrl": source_url},
        })  # fmt: skip
        self.call("POST", "/v3/policydefinitions", {
            "@context": {"@vocab": EDC_NS}, "@id": f"open-{asset_id}",
            "policy": {"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set",
                       "permission": [{"action": "use"}]},
        })  # fmt: skip
        self.call("POST", "/v3/contractdefinitions", {
            "@context": {"@vocab": EDC_NS}, "@id": f"cd-{asset_id}",
            "accessPolicyId": f"open-{asset_id}", "contractPolicyId": f"open-{asset_id}",
            "assetsSelector": [{"@type": "Criterion", "operandLeft": f"{EDC_NS}id",
                                "operator": "=", "operandRight": asset_id}],
        })  # fmt: skip

    def catalog(self, address: str, peer_did: str) -> dict[str, Any]:
        catalog = dict(self.call("POST", "/v3/catalog/request", {
            "@context": {"@vocab": EDC_NS}, "@type": "CatalogRequest",
            "counterPartyAddress": address, "counterPartyId": peer_did,
            "protocol": DSP_PROTOCOL,
        }))  # fmt: skip
        # kept beside the logs: what EDC made of the peer's catalog
        (self.dir / f"catalog-{peer_did.rsplit('%3A', 1)[-1]}.json").write_text(
            json.dumps(catalog, indent=1)
        )
        return catalog

    def negotiate(self, address: str, peer_did: str, offer: dict[str, Any], target: str) -> str:
        """Request `offer` as the catalog showed it (EDC 0.15.1 answers a catalog in the DSP
        compact form; its management API reads a policy in the ODRL context)."""
        policy = {"@context": "http://www.w3.org/ns/odrl.jsonld", "@id": offer["@id"],
                  "@type": "Offer", "assigner": peer_did, "target": target}  # fmt: skip
        for rule in ("permission", "prohibition", "obligation"):
            if offer.get(rule):
                policy[rule] = offer[rule]
        answer = self.call("POST", "/v3/contractnegotiations", {
            "@context": {"@vocab": EDC_NS}, "@type": "ContractRequest",
            "counterPartyAddress": address, "protocol": DSP_PROTOCOL, "policy": policy,
        })  # fmt: skip
        return str(answer["@id"])

    def wait(self, kind: str, pid: str, states: set[str], timeout: float = STEP_TIMEOUT) -> Any:
        """Poll an EDC negotiation or transfer until it is in `states`; fail naming its error."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            last = self.call("GET", f"/v3/{kind}/{pid}")
            state = last.get("state")
            if state in states:
                return last
            if state in {"TERMINATED", "FINALIZED", "COMPLETED", "DEPROVISIONED"}:
                break
            time.sleep(0.05)
        raise StepFailed(
            f"EDC {self.name} {kind} {pid} is {last.get('state')} (wanted {'/'.join(states)})"
            f": {last.get('errorDetail') or 'no errorDetail'}"
        )

    def transfer(
        self, address: str, agreement: str, kind: str, sink: str | None, events: str | None = None
    ) -> str:
        body: dict[str, Any] = {
            "@context": {"@vocab": EDC_NS}, "@type": "TransferRequest",
            "counterPartyAddress": address, "contractId": agreement, "protocol": DSP_PROTOCOL,
            "transferType": kind,
        }  # fmt: skip
        if sink is not None:
            body["dataDestination"] = {"type": "HttpData", "baseUrl": sink}
        if events is not None:
            body["callbackAddresses"] = [{"@type": "CallbackAddress", "uri": events,
                                          "events": ["transfer.process.started"],
                                          "transactional": False}]  # fmt: skip
        return str(self.call("POST", "/v3/transferprocesses", body)["@id"])


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


class Sink:
    """Test double for a push destination: keeps what is POSTed or PUT to it."""

    def __init__(self) -> None:
        self.received: dict[str, bytes] = {}
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def _keep(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = bytearray()
                    while (size := int(self.rfile.readline().strip() or b"0", 16)) > 0:
                        data += self.rfile.read(size)
                        self.rfile.readline()
                    self.rfile.readline()
                    body = bytes(data)
                else:
                    body = self.rfile.read(length)
                sink.received[self.path] = body
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = _keep

            def do_GET(self) -> None:  # the same server is the EDC provider's data source
                body = SOURCE_BYTES.get(self.path.split("?")[0])
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


SOURCE_BYTES: dict[str, bytes] = {}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def field_of(obj: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in obj:
            return obj[name]
    return None


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def log_evidence(text: str, *needles: str) -> str | None:
    """The first log line holding one of `needles` (trimmed), as evidence."""
    for line in text.splitlines():
        if any(n in line for n in needles):
            return re.sub(r"\x1b\[[0-9;]*m", "", line).strip()[:400]
    return None


# known causes, recognised in the logs, said plainly
DIAGNOSES = {
    "Token is not a Bearer token": "EDC 0.15.1 reads a DSP Authorization only as"
    " `Bearer <token>`; ours came without `Bearer `",
    "has no `token` claim": "our verifier sent EDC's credential service a bare access token; DCP"
    " 1.0 wants the verifier's own self-issued token with the access token in its `token` claim",
    "Unrecognized token 'eyJ": "EDC 0.15.1 parses a status list credential only as JSON; our"
    " authority answered a JWT (EDC asked Accept: application/vc+ld+json,application/json)",
    "did not contain expected audience": "the token is addressed to a DID derived from EDC's DSP"
    " address, not to EDC's own DID",
    "handle HttpData source and https://w3id.org/idsa/v4.1/HTTP destination": "our push"
    " destination is typed https://w3id.org/idsa/v4.1/HTTP; EDC 0.15.1's data plane pushes only"
    " to an `HttpData` destination with `baseUrl`",
    "the push dataAddress is refused": "EDC's push destination is `HttpData` with `baseUrl` (EDC"
    " IRIs in endpointProperties), which we did not read",
    "Presentation Query failed": "our credential service refused EDC's DCP 1.0 presentation"
    " query (EDC sends its own self-issued token, nesting our access token in `token`)",
}
LOG_NEEDLES = ("Unauthorized:", "[identity test double]", "SEVERE", "errorDetail",
               "Presentation Query failed", "Exception:")  # fmt: skip
OUR_NEEDLES = ("WARNING", "ERROR", "refused", "no presentation", "Unauthorized")


class LogWatch:
    """Where each log stood when a step began; on failure, what was logged since."""

    def __init__(self, logs: dict[str, Path]) -> None:
        self.logs = logs
        self.marks = {name: _size(path) for name, path in logs.items()}

    def explain(self) -> str:
        parts: list[str] = []
        causes: list[str] = []
        for name, path in self.logs.items():
            text = path.read_bytes()[self.marks[name] :].decode(errors="replace")
            text = re.sub(r"\x1b\[[0-9;]*m", "", text)
            needles = OUR_NEEDLES if name.startswith("our") else LOG_NEEDLES
            found: list[str] = []
            for line in text.splitlines():
                if any(n in line for n in needles) and line.strip() not in found:
                    found.append(line.strip()[:300])
            if found:
                parts.append(f"{name} log: " + " | ".join(found[:3]))
            causes += [why for needle, why in DIAGNOSES.items() if needle in text]
        why = f"WHY: {'; '.join(dict.fromkeys(causes))}. " if causes else ""
        return why + "; ".join(parts)


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def edr_fetch(address: dict[str, Any]) -> bytes:
    """Follow an EDR as EDC received it (a DataAddress): GET its endpoint with its token."""
    props = address.get("properties", address)
    # what EDC's own EDR clients read; EDC 0.15.1 builds the EDR from the DSP dataAddress's
    # endpointType and endpointProperties only (JsonObjectToDataAddressDspaceTransformer): a
    # top-level DSP `endpoint` is dropped
    endpoint = props.get(f"{EDC_NS}endpoint")
    token = props.get(f"{EDC_NS}authorization")
    if not endpoint:
        raise StepFailed(
            f"EDC's EDR has no {EDC_NS}endpoint: EDC 0.15.1 reads the pull address only from "
            f"endpointProperties named with EDC IRIs; it made of our TransferStartMessage: "
            f"{json.dumps(address)[:500]}"
        )
    request = urllib.request.Request(str(endpoint))
    if token:
        request.add_header("Authorization", str(token))
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return bytes(answer.read())
    except urllib.error.HTTPError as exc:
        raise StepFailed(
            f"GET {endpoint} with the EDR token -> {exc.code}: "
            f"{exc.read().decode(errors='replace')[:300]}; EDR: {json.dumps(address)[:400]}"
        ) from exc


# ------------------------------------------------------------------------------------------
# the suite
# ------------------------------------------------------------------------------------------


@dataclass
class Results:
    lines: list[tuple[str, str, float, str]] = field(default_factory=list)

    def run(self, name: str, step: Callable[[], str], watch: LogWatch | None = None) -> bool:
        began = time.monotonic()
        try:
            evidence = step()
            verdict = "PASS"
        except EdcLimit as exc:
            verdict, evidence = "EDC-LIMIT", str(exc)
        except (StepFailed, ApiError, AssertionError, RuntimeError, OSError) as exc:
            verdict, evidence = "FAIL", str(exc)
        except Exception as exc:  # a bug in a step is that step's FAIL
            verdict = "FAIL"
            evidence = f"{type(exc).__name__}: {exc} {traceback.format_exc(limit=2)}"
        took = time.monotonic() - began
        if verdict == "FAIL" and watch is not None and (said := watch.explain()):
            evidence += " -- " + said
        evidence = " ".join(evidence.split())
        self.lines.append((verdict, name, took, evidence))
        print(f"{verdict} {name} {took:.1f}s {evidence}", flush=True)
        return verdict == "PASS"


class Suite:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.results = Results()
        self.payload = os.urandom(256 * 1024) + b"interop payload\n" * 1000
        self.payload_sha = sha(self.payload)
        SOURCE_BYTES["/source"] = self.payload
        self.sink = Sink()
        self.nodes: list[ConnectorProcess] = []
        self.edcs: list[EdcRuntime] = []

    # setup --------------------------------------------------------------------------------

    def start(self) -> None:
        began = time.monotonic()
        self.authority = self.node("authority", ("--authority",))
        self.edc_p = EdcRuntime(self.root, "edc-provider", self.authority.did)
        self.edc_c = EdcRuntime(self.root, "edc-consumer", self.authority.did)
        self.edcs = [self.edc_p, self.edc_c]
        for edc in self.edcs:
            edc.start()  # both JVMs boot while our processes start
        checks = ("--trusted-issuer", self.authority.did, "--require-membership")
        # EDC signs no agreements (our own tdsc:providerSignature is an extension)
        self.us = self.node("us", checks, member=True, accept_unsigned_agreements="true")
        self.peer = self.node("peer", checks, member=True)
        payload_file = self.root / "payload.bin"
        payload_file.write_bytes(self.payload)
        self.us.publish(payload_file, "interop-data", title="Interop payload")
        for edc in self.edcs:
            edc.wait_ready()
            self.onboard(edc.did, edc.name, edc.dsp)
            edc.credentials_file.write_text("\n".join(self.credentials_for(edc)) + "\n")
        self.edc_p.publish("edc-asset", self.sink.url + "/source")
        print(f"# setup {time.monotonic() - began:.1f}s: authority {self.authority.did}, "
              f"us {self.us.did}, EDC provider {self.edc_p.did}, EDC consumer {self.edc_c.did}",
              flush=True)  # fmt: skip

    def node(
        self, name: str, init: tuple[str, ...], member: bool = False, **settings: str
    ) -> ConnectorProcess:
        node = ConnectorProcess(self.root, name, extra_init=init)
        node.set(**settings)
        if member:
            self.onboard(node.did, name, node.dsp)
            node.set(issuer_url=self.authority.base_url)
        node.start()
        self.nodes.append(node)
        if member:
            wait_for(f"{name}'s credentials", lambda: node.api.get("/api/v1/credentials"), 30)
        return node

    def onboard(self, did: str, name: str, dsp: str) -> None:
        body = {"id": did, "name": name, "organisation": f"{name} org", "roles": ["interop"],
                "region": "DE", "dspEndpoint": dsp}  # fmt: skip
        self.authority.api.post("/api/v1/authority/participants", body)

    def credentials_for(self, edc: EdcRuntime) -> list[str]:
        """Ask our authority for the EDC participant's credentials, as that participant (a
        self-issued token signed with its key; the authority resolves its DID document from
        the EDC runtime's identity test double)."""
        token = TokenIssuer(edc.did, edc.key_pair, 300).issue(self.authority.did)
        message = {"@context": ["https://w3id.org/dspace-dcp/v1.0/dcp.jsonld"],
                   "type": "CredentialRequestMessage", "holderPid": edc.did,
                   "credentials": [{"credentialType": "MembershipCredential",
                                    "format": "vc1_0_jwt"}]}  # fmt: skip
        request = urllib.request.Request(
            self.authority.base_url + "/authority/v1/credentials",
            data=json.dumps(message).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            issued = json.loads(answer.read())
        return [str(c["payload"]) for c in issued["credentials"]]

    def watch(self) -> LogWatch:
        return LogWatch({"our connector": self.us.log_path, "EDC provider": self.edc_p.log_path,
                         "EDC consumer": self.edc_c.log_path})  # fmt: skip

    def close(self) -> None:
        for edc in self.edcs:
            edc.stop()
        for node in self.nodes:
            node.stop()
        self.sink.close()

    # EDC as consumer, us as provider ------------------------------------------------------

    def edc_catalog(self) -> str:
        catalog = self.edc_c.catalog(self.us.dsp, self.us.did)
        datasets = as_list(field_of(catalog, "dcat:dataset", "dataset", f"{DCAT}dataset"))
        ours = [d for d in datasets if d.get("@id") == "interop-data"]
        if not ours:
            raise StepFailed(f"EDC's catalog of us lacks interop-data: {json.dumps(catalog)[:500]}")
        offers = as_list(field_of(ours[0], "odrl:hasPolicy", "hasPolicy", f"{ODRL}hasPolicy"))
        if not offers:
            raise StepFailed(f"interop-data has no offer in EDC's view: {json.dumps(ours[0])}")
        self.us_offer = offers[0]
        return f"EDC sees interop-data with offer {offers[0].get('@id')}"

    def edc_negotiation(self) -> str:
        offer = getattr(self, "us_offer", None)
        if offer is None:
            raise StepFailed("no offer: the catalog step failed")
        nid = self.edc_c.negotiate(self.us.dsp, self.us.did, offer, "interop-data")
        done = self.edc_c.wait("contractnegotiations", nid, {"FINALIZED"})
        self.edc_agreement = str(done["contractAgreementId"])
        return f"EDC negotiation {nid} FINALIZED, agreement {self.edc_agreement}"

    def edc_pull(self) -> str:
        agreement = getattr(self, "edc_agreement", None)
        if agreement is None:
            raise StepFailed("no agreement: the negotiation step failed")
        # EDC 0.15.1 has no EDR management API (edr-cache-api is not published): its
        # transfer.process.started event, posted to a callback, carries the EDR instead
        events = "/events/pull"
        tid = self.edc_c.transfer(
            self.us.dsp, agreement, "HttpData-PULL", None, self.sink.url + events
        )
        self.edc_c.wait("transferprocesses", tid, {"STARTED"})
        event = json.loads(wait_for("EDC's started event", lambda: self.sink.received.get(events)))
        address = (event.get("payload") or {}).get("dataAddress")
        if not isinstance(address, dict):
            raise StepFailed(f"EDC's started event has no dataAddress: {json.dumps(event)[:600]}")
        data = edr_fetch(address)
        if sha(data) != self.payload_sha:
            raise StepFailed(f"pulled {len(data)} bytes, SHA-256 {sha(data)} != {self.payload_sha}")
        return f"EDC pulled {len(data)} bytes via its EDR, SHA-256 equal ({self.payload_sha[:16]}…)"

    def edc_push(self) -> str:
        agreement = getattr(self, "edc_agreement", None)
        if agreement is None:
            raise StepFailed("no agreement: the negotiation step failed")
        path = "/push-from-us"
        tid = self.edc_c.transfer(self.us.dsp, agreement, "HttpData-PUSH", self.sink.url + path)

        def arrived() -> bool:
            if path in self.sink.received:
                return True
            state = self.edc_c.call("GET", f"/v3/transferprocesses/{tid}")
            if state.get("state") in {"TERMINATED", "COMPLETED"}:
                raise StepFailed(
                    f"nothing arrived at the HttpData destination; EDC transfer {tid} is "
                    f"{state.get('state')}: {state.get('errorDetail')}"
                )
            return False

        try:
            wait_for("bytes pushed by us", arrived, STEP_TIMEOUT)
        except AssertionError as exc:
            raise StepFailed(f"nothing arrived at the HttpData destination: {exc}") from exc
        data = self.sink.received[path]
        if sha(data) != self.payload_sha:
            raise StepFailed(f"pushed {len(data)} bytes, SHA-256 {sha(data)} != {self.payload_sha}")
        return f"we pushed {len(data)} bytes to EDC's HttpData destination, SHA-256 equal"

    # us as consumer, EDC as provider ------------------------------------------------------

    def us_catalog(self) -> str:
        # EDC's DID is served apart from its DSP address: name it (counterPartyId)
        body = {"counterPartyAddress": self.edc_p.dsp, "counterPartyId": self.edc_p.did}
        catalog = self.us.api.post("/api/v1/catalog/request", body)
        datasets = [d for d in as_list(catalog.get("dataset")) if d.get("@id") == "edc-asset"]
        if not datasets:
            raise StepFailed(
                f"our view of EDC's catalog lacks edc-asset: {json.dumps(catalog)[:500]}"
            )
        self.edc_offer = datasets[0]["hasPolicy"][0]
        return f"we see edc-asset with offer {self.edc_offer.get('@id')}"

    def us_negotiation(self) -> str:
        offer = getattr(self, "edc_offer", None)
        if offer is None:
            raise StepFailed("no offer: the catalog step failed")
        body = {"counterPartyAddress": self.edc_p.dsp, "counterPartyId": self.edc_p.did,
                "datasetId": "edc-asset", "offer": offer}  # fmt: skip
        neg = self.us.api.post("/api/v1/negotiations", body)
        done = self.us.api.wait_state("negotiations", neg["id"], {"FINALIZED"}, STEP_TIMEOUT)
        self.us_agreement = str(done["agreement_id"])
        return f"our negotiation {neg['id']} FINALIZED, agreement {self.us_agreement}"

    def us_transfer(self, fmt: str) -> str:
        agreement = getattr(self, "us_agreement", None)
        if agreement is None:
            raise StepFailed("no agreement: the negotiation step failed")
        mark = len(self.edc_p.log_text())
        tp = self.us.api.post("/api/v1/transfers", {"agreementId": agreement, "format": fmt})
        try:
            done = self.us.api.wait_state("transfers", tp["id"], {"COMPLETED"}, STEP_TIMEOUT)
        except ApiError as exc:
            edc_log = self.edc_p.log_text()[mark:]
            limit = log_evidence(edc_log, "No Endpoint generator function registered")
            if limit and fmt.endswith("PULL"):
                jars = sorted((EDC_DIR / "target" / "dependency").glob("data-plane-public-api*"))
                raise EdcLimit(
                    f"EDC provider log: {limit}; the module that registers that function, "
                    f"{PUBLIC_API_MODULE}, has no 0.15.1 on Maven Central (runtime holds: "
                    f"{[j.name for j in jars] or 'no data-plane-public-api jar'})"
                    f"; our side: {exc.detail}"
                ) from exc
            hint = log_evidence(edc_log, "SEVERE", "WARNING", "Exception")
            raise StepFailed(f"{exc.detail}; EDC provider log: {hint}") from exc
        if done.get("sha256") != self.payload_sha:
            raise StepFailed(f"received SHA-256 {done.get('sha256')} != {self.payload_sha}")
        return f"{done.get('bytes')} bytes received, SHA-256 equal ({self.payload_sha[:16]}…)"

    # reference: negotiation latency ------------------------------------------------------

    def edc_to_edc(self) -> list[float]:
        catalog = self.edc_c.catalog(self.edc_p.dsp, self.edc_p.did)
        datasets = as_list(field_of(catalog, "dcat:dataset", "dataset", f"{DCAT}dataset"))
        asset = next(d for d in datasets if d.get("@id") == "edc-asset")
        offer = as_list(field_of(asset, "odrl:hasPolicy", "hasPolicy", f"{ODRL}hasPolicy"))[0]
        times = []
        for _ in range(REPEAT):
            began = time.monotonic()
            nid = self.edc_c.negotiate(self.edc_p.dsp, self.edc_p.did, offer, "edc-asset")
            self.edc_c.wait("contractnegotiations", nid, {"FINALIZED"})
            times.append(time.monotonic() - began)
        return times

    def ours_to_ours(self) -> list[float]:
        catalog = self.peer.api.post(
            "/api/v1/catalog/request", {"counterPartyAddress": self.us.dsp}
        )
        dataset = next(d for d in catalog["dataset"] if d["@id"] == "interop-data")
        body = {"counterPartyAddress": self.us.dsp, "datasetId": "interop-data",
                "offer": dataset["hasPolicy"][0]}  # fmt: skip
        times = []
        for _ in range(REPEAT):
            began = time.monotonic()
            neg = self.peer.api.post("/api/v1/negotiations", body)
            self.peer.api.wait_state("negotiations", neg["id"], {"FINALIZED"}, STEP_TIMEOUT)
            times.append(time.monotonic() - began)
        return times

    def reference(self) -> str:
        edc = self.edc_to_edc()
        ours = self.ours_to_ours()
        return (
            f"negotiation request->FINALIZED, median of {REPEAT}: EDC<->EDC "
            f"{statistics.median(edc) * 1000:.0f} ms (min {min(edc) * 1000:.0f}, max "
            f"{max(edc) * 1000:.0f}); ours<->ours {statistics.median(ours) * 1000:.0f} ms "
            f"(min {min(ours) * 1000:.0f}, max {max(ours) * 1000:.0f})"
        )

    def run(self) -> Results:
        only = os.environ.get("INTEROP_ONLY", "")  # a comma-separated list of step prefixes
        r = _Filtered(self.results, [p for p in only.split(",") if p], self.watch)
        r.run("edc->us:catalog", self.edc_catalog)
        r.run("edc->us:negotiation", self.edc_negotiation)
        r.run("edc->us:pull", self.edc_pull)
        r.run("edc->us:push", self.edc_push)
        r.run("us->edc:catalog", self.us_catalog)
        r.run("us->edc:negotiation", self.us_negotiation)
        r.run("us->edc:pull", lambda: self.us_transfer("HttpData-PULL"))
        r.run("us->edc:push", lambda: self.us_transfer("HttpData-PUSH"))
        r.run("reference:negotiation-median", self.reference)
        return self.results


@dataclass
class _Filtered:
    results: Results
    prefixes: list[str]
    watch: Callable[[], LogWatch]

    def run(self, name: str, step: Callable[[], str]) -> bool:
        if self.prefixes and not any(name.startswith(p) for p in self.prefixes):
            return False
        return self.results.run(name, step, self.watch())


def _fail(why: str) -> str:
    raise StepFailed(why)


def build() -> None:
    """Compile the test double and copy EDC's jars when they are missing or older than the
    sources (Maven resolves from ~/.m2 once it is warm)."""
    target = EDC_DIR / "target"
    built = target / "classes" / "tdsc" / "interop" / "edc" / "IdentityTestDoubleExtension.class"
    sources = [EDC_DIR / "pom.xml", *(EDC_DIR / "src").rglob("*")]
    if (
        built.exists()
        and (target / "dependency").is_dir()
        and all(p.stat().st_mtime <= built.stat().st_mtime for p in sources)
    ):
        return
    mvn = [
        "mvn",
        "-q",
        "-B",
        "-Dstyle.color=never",
        "-f",
        str(EDC_DIR / "pom.xml"),
        "package",
        "dependency:copy-dependencies",
    ]
    done = subprocess.run(mvn, capture_output=True, text=True)
    if done.returncode != 0:  # Maven's output only when it failed
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"building tests/interop/edc failed ({' '.join(mvn)})")


def main() -> int:
    began = time.monotonic()
    opa = ROOT / ".tools" / "bin" / "opa"  # where `make` installs it
    if "OPA_BIN" not in os.environ and opa.exists():
        os.environ["OPA_BIN"] = str(opa)
    build()
    root = Path(tempfile.mkdtemp(prefix="interop-"))
    suite = Suite(root)
    try:
        try:
            suite.start()
        except Exception as exc:  # setup failing is one FAIL line, saying why
            why = f"{type(exc).__name__}: {exc}"
            suite.results.run("setup", lambda: _fail(why))
        else:
            suite.run()
    finally:
        suite.close()
    lines = suite.results.lines
    passed = sum(1 for v, *_ in lines if v == "PASS")
    failed = sum(1 for v, *_ in lines if v == "FAIL")
    limits = sum(1 for v, *_ in lines if v == "EDC-LIMIT")
    print(f"# {limits} EDC-LIMIT, total {time.monotonic() - began:.0f}s, logs in {root}")
    print(f"{passed} passed, {failed} failed")
    if not failed and not os.environ.get("INTEROP_KEEP"):
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
