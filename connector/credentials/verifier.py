"""The verifier side: ask a caller for its credentials and turn the valid ones into claims.

Each credential is checked for a trusted issuer, the issuer's signature, its validity period,
its subject (the caller) and its revocation bit; what fails is kept as a reason, so a refusal
says why ("... was revoked by its issuer"), not just "no membership".
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import OrderedDict
from datetime import datetime
from typing import Any

import aiohttp

from connector.credentials import status_list
from connector.credentials.jwt_vc import (
    DCP_CONTEXT,
    MEMBERSHIP,
    ROLE,
    SCOPE_PREFIX,
    STATUS_LIST,
    Credential,
    CredentialError,
    check_signature,
    read_credential,
    read_presentation,
)
from connector.egress import (
    SMALL_ANSWER_MAX,
    Egress,
    EgressRefused,
    json_limited,
    read_limited,
)
from connector.errors import ConnectorError
from connector.identity import access, jws
from connector.identity.did import DidResolver, served_by, service_endpoint
from connector.identity.tokens import TokenIssuer, bearer

log = logging.getLogger(__name__)

TIMEOUT = aiohttp.ClientTimeout(total=10)
CLAIMS_CACHE_MAX = 10_000
NO_PRESENTATION = "its credential service did not answer with a presentation"
SCOPES = [f"{SCOPE_PREFIX}{MEMBERSHIP}:read", f"{SCOPE_PREFIX}{ROLE}:read"]
# a DCP scope `<alias>:<credential type>:<operation>` (EDC: org.eclipse.edc.vc.type:X:read)
_SCOPE = re.compile(r"[^:\s]+:[^:\s]+:(read|\*|all)")


def query_scopes(access_token: str) -> list[str]:
    """What to ask a holder's credential service for: the DCP scopes its access token grants
    us, if it names any (an EDC holder refuses a query beyond them, and its data space may use
    another alias than ours), else ours."""
    try:
        _, claims = jws.unverified(access_token)
    except jws.JwsError:
        return SCOPES
    granted = claims.get("scope")
    scopes = [s for s in granted.split() if _SCOPE.fullmatch(s)] if isinstance(granted, str) else []
    return scopes or SCOPES


def _legacy(access_token: str, holder: str) -> bool:
    """An access token of one of our connectors from before DCP 1.0 queries: its holder may
    want it alone as the Bearer token (they did until the nested form)."""
    try:
        _, claims = jws.unverified(access_token)
    except jws.JwsError:
        return False
    return claims.get("scope") == access.SCOPE and claims.get("iss") == holder


def claims_of(valid: list[Credential], problems: list[str]) -> dict[str, Any]:
    """The policy input's `consumer.credentials` (docs/policy-contract.md)."""
    out: dict[str, Any] = {"membership": False, "roles": [], "issuers": [], "problems": problems}
    roles: list[str] = []
    for c in valid:
        if c.issuer not in out["issuers"]:
            out["issuers"].append(c.issuer)
        if c.kind == MEMBERSHIP:
            out["membership"] = True
            for key in ("organisation", "region", "memberSince"):
                if key in c.claims:
                    out[key] = c.claims[key]
        if c.kind == ROLE:
            role = c.claims.get("role")
            roles.extend(r for r in (role if isinstance(role, list) else [role]) if r)
    out["roles"] = sorted({r for r in roles if isinstance(r, str)})
    return out


class CredentialRevoked(CredentialError):
    """The issuer's status list has the credential's bit set."""


class _NoAnswer(Exception):
    """A credential service answered, but not with 200 (the status is for our log only)."""


class CredentialVerifier:
    def __init__(
        self,
        egress: Egress,
        resolver: DidResolver,
        own_did: str,
        trusted_issuers: list[str],
        cache_seconds: float,
        signer: TokenIssuer | None = None,
    ) -> None:
        self._egress = egress
        # signs our own self-issued token for a DCP 1.0 presentation query
        self._signer = signer
        self._resolver = resolver
        self._did = own_did
        self._trusted = set(trusted_issuers)
        self._ttl = cache_seconds
        # an LRU: every caller with a resolvable DID adds one, authenticated or not yet a member
        self._claims: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._lists: dict[str, tuple[float, bytes]] = {}

    @property
    def enabled(self) -> bool:
        return bool(self._trusted)

    async def claims(self, caller: str, access_token: str | None) -> dict[str, Any]:
        hit = self._claims.get(caller)
        if hit and hit[0] > time.monotonic():
            self._claims.move_to_end(caller)
            return hit[1]
        result = await self._verify(caller, access_token)
        # only a clean verification is reused: a refusal (no credential, a revoked or expired
        # one, an unreachable status list) is decided afresh on the next request, so a member
        # reinstated or renewed is let in at once. A revocation is seen within twice
        # `credential_cache_seconds`: a cached verification, made with a status list that
        # was itself up to that old (docs/city-dataspace.md).
        if self._ttl > 0 and not result["problems"]:
            self._claims[caller] = (time.monotonic() + self._ttl, result)
            self._claims.move_to_end(caller)
            while len(self._claims) > CLAIMS_CACHE_MAX:
                self._claims.popitem(last=False)
        return result

    async def _verify(self, caller: str, access_token: str | None) -> dict[str, Any]:
        if not access_token:
            return claims_of(
                [],
                [
                    f"{caller} presented no credentials (its token carries no access token"
                    " for a credential service)"
                ],
            )
        try:
            tokens = await self._presentation(caller, access_token)
        except (ConnectorError, CredentialError) as exc:
            return claims_of([], [f"no presentation from {caller}: {exc.detail}"])
        return await self._claims_from(caller, tokens, self._trusted)

    async def own_claims(self, tokens: list[str], also_trusted: set[str]) -> dict[str, Any]:
        """Our own credentials (the wallet's) as policy claims, verified as a peer's would be:
        issuer trusted (ours, or `also_trusted`: the authority we asked for them), signature,
        validity, revocation. The consumer's use decision reads them (issue 17)."""
        return await self._claims_from(self._did, tokens, self._trusted | also_trusted)

    async def _claims_from(
        self, holder: str, tokens: list[str], trusted: set[str]
    ) -> dict[str, Any]:
        valid: list[Credential] = []
        problems: list[str] = []
        for token in tokens:
            try:
                credential = read_credential(token)
                await self._check(credential, holder, trusted)
            except ConnectorError as exc:
                problems.append(exc.detail)
                continue
            valid.append(credential)
        if not tokens:
            problems.append(f"{holder} holds no credentials")
        return claims_of(valid, problems)

    async def _presentation(self, caller: str, access_token: str) -> list[str]:
        endpoint = service_endpoint(await self._resolver.resolve(caller), "CredentialService")
        if endpoint is None:
            raise CredentialError(f"the DID document of {caller} names no CredentialService")
        query = {
            "@context": [DCP_CONTEXT],
            "type": "PresentationQueryMessage",
            "scope": query_scopes(access_token),
        }
        # DCP 1.0: our own self-issued token for the holder, carrying its access token; a
        # holder of ours from before that form refuses it (401) and takes the access token.
        forms = [] if self._signer is None else [self._signer.issue(caller, access_token)]
        if not forms or _legacy(access_token, caller):
            forms.append(access_token)
        # The caller chose this endpoint: whether it was refused, unreachable or answered an
        # error, the caller learns the same sentence (no remote text, no status, no address,
        # so this is no probe of the operator's network); the detail is logged here.
        body: Any = None
        try:
            for n, token in enumerate(forms):
                async with self._egress.request(
                    "POST",
                    endpoint.rstrip("/") + "/presentations/query",
                    json=query,
                    headers={"Authorization": bearer(token)},
                    timeout=TIMEOUT,
                ) as resp:
                    if resp.status == 401 and n + 1 < len(forms):
                        continue
                    if resp.status != 200:
                        raise _NoAnswer(f"HTTP {resp.status}")
                    body = await json_limited(resp, SMALL_ANSWER_MAX)
                    break
        except (_NoAnswer, EgressRefused, aiohttp.ClientError, TimeoutError, ValueError) as exc:
            why = str(exc) if isinstance(exc, _NoAnswer) else getattr(exc, "detail", repr(exc))
            log.info("credential service of %s gave no presentation: %s", caller, why)
            raise CredentialError(NO_PRESENTATION) from None
        presentations = body.get("presentation") if isinstance(body, dict) else None
        if not isinstance(presentations, list):
            raise CredentialError("answer is not a PresentationResponseMessage")
        tokens: list[str] = []
        for vp in presentations:
            if not isinstance(vp, str):
                raise CredentialError("presentation is not a JWT")
            tokens += await read_presentation(vp, caller, self._did, self._resolver)
        return tokens

    async def _check(self, c: Credential, holder: str, trusted: set[str]) -> None:
        if c.issuer not in trusted:
            raise CredentialError(
                f"{c.kind} of {holder} was issued by {c.issuer}, which is not a trusted issuer"
            )
        if c.subject != holder:
            raise CredentialError(f"{c.kind} was issued to {c.subject}, not to {holder}")
        await check_signature(c, self._resolver)
        now = time.time()
        if c.expires_at is not None and c.expires_at <= now:
            raise CredentialError(
                f"{c.kind} of {holder} from {c.issuer} expired at {c.summary()['expiresAt']}"
            )
        if c.issued_at > now + 30:
            raise CredentialError(f"{c.kind} of {holder} is not valid yet")
        if c.status is not None:
            await self._check_status(c, holder)

    async def status(self, c: Credential) -> str:
        """'valid', 'revoked', or why the status cannot be told: for showing a holder its own
        credentials (`connector credentials list`)."""
        if c.status is None:
            return "valid"
        url = c.status.get("statusListCredential")
        if isinstance(url, str):
            self._lists.pop(url, None)  # the holder asks now: not a list fetched earlier
        try:
            await self._check_status(c, c.subject)
        except CredentialRevoked:
            return "revoked"
        except ConnectorError as exc:
            return f"unknown ({exc.detail})"
        return "valid"

    async def _check_status(self, c: Credential, holder: str) -> None:
        url = c.status.get("statusListCredential") if c.status else None
        index = c.status.get("statusListIndex") if c.status else None
        try:
            position = int(str(index))
        except ValueError as exc:
            raise CredentialError(f"{c.kind} has a bad statusListIndex {index!r}") from exc
        if not isinstance(url, str):
            raise CredentialError(f"{c.kind} names no statusListCredential")
        bits = await self._status_bits(url, c.issuer)
        if status_list.is_set(bits, position):
            raise CredentialRevoked(
                f"{c.kind} of {holder} was revoked by its issuer {c.issuer}"
                f" (status list {url}, index {position})"
            )

    async def _status_bits(self, url: str, issuer: str) -> bytes:
        hit = self._lists.get(url)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        try:
            async with self._egress.request(
                "GET", url, headers={"Accept": status_list.JWT_MEDIA}, timeout=TIMEOUT
            ) as resp:
                if resp.status != 200:
                    raise _NoAnswer(f"HTTP {resp.status}")
                text = (await read_limited(resp, SMALL_ANSWER_MAX)).decode("utf-8", "replace")
        except (_NoAnswer, EgressRefused, aiohttp.ClientError, TimeoutError) as exc:
            why = str(exc) if isinstance(exc, _NoAnswer) else getattr(exc, "detail", repr(exc))
            log.info("status list %s cannot be fetched: %s", url, why)
            raise CredentialError(f"status list {url} cannot be fetched") from None
        text = text.strip()
        if text.startswith("{"):
            encoded = self._json_status_list(url, issuer, text)
        else:
            encoded = await self._jwt_status_list(url, issuer, text)
        bits = status_list.decode(encoded)
        if self._ttl > 0:
            self._lists[url] = (time.monotonic() + self._ttl, bits)
        return bits

    async def _jwt_status_list(self, url: str, issuer: str, text: str) -> str:
        """The encodedList of a status list JWT the issuer signed."""
        credential = read_credential(text)
        if credential.issuer != issuer or STATUS_LIST not in credential.types:
            raise CredentialError(f"{url} is not a status list credential of {issuer}")
        await check_signature(credential, self._resolver)
        if credential.expires_at is not None and credential.expires_at <= time.time():
            raise CredentialError(f"status list {url} has expired")
        encoded = credential.claims.get("encodedList")
        if not isinstance(encoded, str):
            raise CredentialError(f"status list {url} has no encodedList")
        return encoded

    def _json_status_list(self, url: str, issuer: str, text: str) -> str:
        """The encodedList of a status list served as a JSON credential (as EDC issuers do
        on request). It carries no signature we check, so it counts only when served from
        the issuer's own did:web host: trusted as far as the issuer's DID document is."""
        secure = url.startswith("https://") or self._resolver.insecure_http
        if not secure or not served_by(url, issuer):
            raise CredentialError(
                f"status list {url} is unsigned JSON, not over TLS from {issuer}'s did:web host"
            )
        try:
            vc = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise CredentialError(f"status list {url} is not JSON") from exc
        named = vc.get("issuer") if isinstance(vc, dict) else None
        if isinstance(named, dict):
            named = named.get("id")
        types = vc.get("type") if isinstance(vc, dict) else None
        if named != issuer or not isinstance(types, list) or STATUS_LIST not in types:
            raise CredentialError(f"{url} is not a status list credential of {issuer}")
        until = vc.get("validUntil", vc.get("expirationDate"))
        if until is not None and _epoch(until) <= time.time():
            raise CredentialError(f"status list {url} has expired")
        subject = vc.get("credentialSubject")
        if isinstance(subject, list) and len(subject) == 1:
            subject = subject[0]
        encoded = subject.get("encodedList") if isinstance(subject, dict) else None
        if not isinstance(encoded, str):
            raise CredentialError(f"status list {url} has no encodedList")
        return encoded


def _epoch(stamp: Any) -> float:
    """Seconds of an XML Schema dateTime (`2026-01-01T00:00:00Z`); CredentialError if not one."""
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise CredentialError("status list has a malformed validity date") from exc
