"""Outgoing DSP calls: signed with a fresh self-issued token, errors classified for retry
(a 401 for clock skew is retried: connector/clock.py)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from connector.clock import skew_refusal
from connector.egress import CATALOG_MAX, EgressRefused, describe, read_limited, unreachable
from connector.errors import PeerError
from connector.identity.tokens import bearer
from connector.peer.callbacks import belongs_to
from connector.runtime import Runtime

TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)


def _reason(body: Any) -> str:
    if isinstance(body, dict):
        reason = body.get("reason") or body.get("detail") or body.get("title")
        if isinstance(reason, list):
            return "; ".join(str(r) for r in reason)
        if reason:
            return str(reason)
    return str(body)[:500] if body else "no body"


class NotTheAudience(PeerError):
    """The URL does not belong to the participant the token would be addressed to: nothing
    was sent."""


class DspClient:
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    async def call(
        self,
        method: str,
        url: str,
        audience: str,
        message: dict[str, Any] | None = None,
        who: str = "peer",
    ) -> tuple[int, Any]:
        """Send one message; return (status, body) for 2xx, raise PeerError otherwise. `who`
        names the peer in an error ("provider at URL unreachable (connection refused)")."""
        status, body, _links = await self.call_with_links(method, url, audience, message, who)
        return status, body

    async def call_with_links(
        self,
        method: str,
        url: str,
        audience: str,
        message: dict[str, Any] | None = None,
        who: str = "peer",
    ) -> tuple[int, Any, list[str]]:
        """As `call`, with the answer's `Link` header values (DSP catalog paging).

        The token is addressed to `audience`, so it goes only to a URL of that participant
        (its did:web host or its DSP endpoint): a token sent anywhere else could be replayed
        at the audience by whoever received it."""
        tck_caller = self._rt.settings.tck_mode and not audience.startswith("did:")
        if not tck_caller and not await belongs_to(self._rt, url, audience):
            raise NotTheAudience(
                f"{method} {url} refused: the URL is not {audience}'s (neither on its"
                " did:web host nor under the DSP endpoint its DID document names);"
                " no token was sent",
                retry=False,
            )
        headers = {"Authorization": bearer(self._rt.issuer.issue(audience))}
        try:
            async with self._rt.egress.request(
                method, url, json=message, headers=headers, timeout=TIMEOUT
            ) as resp:
                raw = await read_limited(resp, CATALOG_MAX)
                body: Any
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                if 200 <= resp.status < 300:
                    return resp.status, body, resp.headers.getall("Link", [])
                skew = skew_refusal(f"{method} {url}", resp.status, resp.headers, body, audience)
                if skew is not None:
                    raise skew
                retry = resp.status >= 500 or resp.status in (408, 425, 429)
                raise PeerError(
                    f"{method} {url} answered {resp.status}: {_reason(body)}",
                    http_status=resp.status,
                    body=body,
                    retry=retry,
                )
        except EgressRefused as exc:
            raise PeerError(f"{method} {url} refused: {exc.detail}", retry=False) from exc
        except (aiohttp.ClientConnectorError, aiohttp.ServerTimeoutError, TimeoutError) as exc:
            raise PeerError(f"{unreachable(who, url, exc)}: {method} {url}", retry=True) from exc
        except aiohttp.ClientError as exc:
            raise PeerError(f"{method} {url} failed: {describe(exc)}", retry=True) from exc
