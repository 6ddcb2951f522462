"""The parts one running connector shares: settings, store, identity, HTTP client, policy."""

from __future__ import annotations

import logging
import os
import socket
import ssl
import uuid
from dataclasses import dataclass, field
from typing import Any

from connector.config import Settings
from connector.egress import Egress, EgressPolicy
from connector.errors import Unauthorized
from connector.identity.did import DidResolver, build_document, did_from_url
from connector.identity.keys import KeyPair
from connector.identity.tokens import TokenIssuer, TokenVerifier
from connector.model.enums import Direction
from connector.model.records import TimelineEntry
from connector.policy.decision import DecisionPoint
from connector.store.base import Store
from connector.store.gateway import Database

log = logging.getLogger(__name__)


def replica_id() -> str:
    """This process among replicas sharing one store: host, pid and a random tail."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def replica_gone(owner: str, me: str) -> bool:
    """Whether `owner` (a replica id) was an earlier process on this host that no longer
    runs: a restart after a kill, whose jobs need not wait for their leases to expire. A pid
    that runs again (reused, or in another pid namespace) counts as alive: the lease decides."""
    host, _, rest = owner.partition(":")
    pid_text, _, _ = rest.partition(":")
    if owner == me or host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return True  # this process's pid, another process's id: an earlier run (a container)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def client_ssl_context(settings: Settings) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if settings.ca_file:
        ctx.load_verify_locations(cafile=str(settings.ca_file))
    return ctx


def egress_for(settings: Settings) -> Egress:
    """The one outbound client, with the operator's destination policy (docs/security.md)."""
    policy = EgressPolicy.from_settings(
        settings.egress_allow, dev_insecure_http=settings.dev_insecure_http
    )
    return Egress(policy, client_ssl_context(settings))


# DataAddress properties that carry a bearer credential for the data plane
SECRET_PROPERTIES = frozenset({"authorization", "token", "authkey", "authcode"})
REDACTED = "[redacted]"


def _last_term(name: str) -> str:
    """`authorization` also when written as an IRI (`https://…/ns/authorization`)."""
    for sep in ("/", "#", ":"):
        name = name.rsplit(sep, 1)[-1]
    return name.lower()


def redact_tokens(body: Any) -> Any:
    """`body` with the value of every secret DataAddress property replaced: the timeline is
    shown by the management API and kept for years, a data-plane token must not outlive its
    transfer there (the transfer record itself keeps the one it needs)."""
    if isinstance(body, list):
        return [redact_tokens(item) for item in body]
    if not isinstance(body, dict):
        return body
    name = body.get("name")
    if isinstance(name, str) and _last_term(name) in SECRET_PROPERTIES and "value" in body:
        return {**body, "value": REDACTED}
    return {key: redact_tokens(value) for key, value in body.items()}


@dataclass
class Runtime:
    settings: Settings
    db: Database  # the event loop's way to the store (connector/store/gateway.py)
    keys: KeyPair
    egress: Egress
    decisions: DecisionPoint
    replica: str = field(default_factory=replica_id)  # owner of the jobs and leases it holds
    did: str = field(init=False)
    did_document: dict[str, Any] = field(init=False)
    issuer: TokenIssuer = field(init=False)
    resolver: DidResolver = field(init=False)
    verifier: TokenVerifier = field(init=False)

    def __post_init__(self) -> None:
        self.did = did_from_url(self.settings.base_url)
        self.did_document = build_document(
            self.did, self.keys, self.settings.dsp_url, self.settings.base_url + "/dcp/v1"
        )
        self.issuer = TokenIssuer(self.did, self.keys, self.settings.token_ttl_seconds)
        self.resolver = DidResolver(
            self.egress,
            insecure_http=self.settings.dev_insecure_http,
            ttl_seconds=self.settings.did_cache_seconds,
            max_entries=self.settings.did_cache_entries,
            negative_seconds=self.settings.did_negative_cache_seconds,
            per_host=self.settings.did_resolutions_per_host,
        )
        self.resolver.remember(self.did, self.did_document)
        self.verifier = TokenVerifier(self.did, self.resolver, self._remember_jti)

    @property
    def store(self) -> Store:
        """The writer's store: for code running inside `db.write` units (the writer thread)."""
        return self.db.store

    async def _remember_jti(self, jti: str, expires_at: int) -> None:
        """Within a request's batch the token id is written with the request's state change
        (one commit for both); a replay then undoes that change and is refused."""

        def remember(store: Store) -> None:
            if not store.remember_jti(jti, expires_at):
                raise Unauthorized("token was already used (replay)")

        await self.db.later(remember)

    async def note(
        self, process_id: str, direction: Direction, message_type: str, **kw: Any
    ) -> None:
        """`log` from the event loop: the line is written by the store's writer thread."""
        await self.db.write(lambda s: self.log(process_id, direction, message_type, **kw))

    def log(self, process_id: str, direction: Direction, message_type: str, **kw: Any) -> None:
        """Add one line to a process's timeline (what the API and CLI show), and to the log.
        Inside a `db.write` unit only; on the event loop, `await note(...)`."""
        detail = kw.get("detail") or ""
        if kw.get("body") is not None:
            kw["body"] = redact_tokens(kw["body"])
        log.debug("%s %s %s", direction, message_type, detail, extra={"process_id": process_id})
        self.store.add_event(
            TimelineEntry(
                process_id=process_id, direction=direction, message_type=message_type, **kw
            )
        )
