"""Where a dataset's bytes come from: a local file or an upstream HTTP URL, in chunks.

An upstream URL goes through the egress guard: refused at publication when the policy refuses
it, and a redirect is never followed (an upstream could point us into the operator's network).
Errors name what happened, not the URL or anything the upstream said: a termination reason
goes to the consumer, and the upstream is the provider's own business (the log has the URL).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import aiohttp

from connector.egress import Egress, EgressPolicy, EgressRefused
from connector.errors import BadRequest, PeerError

log = logging.getLogger(__name__)

SOURCE_TYPES = ("file", "http")


def validate(source: dict[str, Any]) -> dict[str, Any]:
    kind = source.get("type")
    if kind == "file":
        path = Path(str(source.get("path", "")))
        if not path.is_absolute():
            raise BadRequest("source.path must be an absolute path")
        if not path.is_file():
            raise BadRequest(f"source file not found: {path}")
        return {"type": "file", "path": str(path)}
    if kind == "http":
        url = str(source.get("url", ""))
        if not url.startswith(("http://", "https://")):
            raise BadRequest("source.url must be an http(s) URL")
        return {"type": "http", "url": url}
    raise BadRequest(f"source.type must be one of {', '.join(SOURCE_TYPES)}")


async def admit(source: dict[str, Any], policy: EgressPolicy) -> None:
    """Refuse (400) an http source the egress policy would refuse, when it is published rather
    than when a consumer first asks for it."""
    if source["type"] != "http":
        return
    try:
        await policy.check_destination(source["url"])
    except EgressRefused as exc:
        raise BadRequest(f"source.url is refused by the egress policy: {exc.detail}") from exc


async def file_digest(path: Path, chunk_size: int) -> tuple[int, str]:
    def work() -> tuple[int, str]:
        h = hashlib.sha256()
        size = 0
        with path.open("rb") as fh:
            while chunk := fh.read(chunk_size):
                h.update(chunk)
                size += len(chunk)
        return size, h.hexdigest()

    return await asyncio.to_thread(work)


async def read(
    source: dict[str, Any], egress: Egress, chunk_size: int, offset: int = 0
) -> AsyncGenerator[bytes, None]:
    """Yield the source's bytes from `offset` on, chunk by chunk; memory stays flat."""
    if source["type"] == "file":
        with Path(source["path"]).open("rb") as fh:
            fh.seek(offset)
            while chunk := fh.read(chunk_size):
                yield chunk
        return
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    timeout = aiohttp.ClientTimeout(sock_read=60)
    url = source["url"]
    try:
        async with egress.request("GET", url, headers=headers, timeout=timeout) as resp:
            if 300 <= resp.status < 400:
                log.warning("upstream %s answered %d (a redirect, not followed)", url, resp.status)
                raise PeerError(
                    f"the upstream source answered with a redirect (HTTP {resp.status}),"
                    " which is not followed",
                    retry=False,
                )
            if resp.status == 416 and offset:
                return  # nothing from `offset` on: a pull of the empty rest (metering.md)
            if resp.status not in (200, 206):
                log.warning("upstream %s answered %d", url, resp.status)
                raise PeerError(
                    f"the upstream source answered HTTP {resp.status}",
                    retry=resp.status >= 500 or resp.status in (408, 429),
                )
            # an upstream that ignores Range sends everything: skip what was delivered
            skip = offset if resp.status == 200 else 0
            async for chunk in resp.content.iter_chunked(chunk_size):
                if skip >= len(chunk):
                    skip -= len(chunk)
                    continue
                yield chunk[skip:] if skip else chunk
                skip = 0
    except EgressRefused as exc:
        log.warning("upstream %s refused by the egress policy: %s", url, exc.detail)
        raise PeerError("the upstream source is refused by the egress policy", retry=False) from exc
    except aiohttp.ClientError as exc:
        log.warning("upstream %s failed: %r", url, exc)
        raise PeerError("the upstream source could not be read", retry=True) from exc
