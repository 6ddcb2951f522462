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
import os
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import aiohttp

from connector.egress import Egress, EgressPolicy, EgressRefused
from connector.errors import BadRequest, PeerError

log = logging.getLogger(__name__)

SOURCE_TYPES = ("file", "http")
SOURCE_MISSING = "source missing"


class SourceMissing(PeerError):
    """The dataset's source file is gone or unreadable at the provider. Asking again cannot
    help, so the transfer ends at once on both sides with words the consumer can act on
    (ask the provider to publish it again); the path stays in the provider's log."""

    status = 410  # gone: a consumer pulling is told not to ask again
    code = "SOURCE_MISSING"

    def __init__(self) -> None:
        super().__init__(
            f"{SOURCE_MISSING}: the provider's data for this dataset is no longer available;"
            " the provider has to restore or publish it again",
            retry=False,
        )


def unavailable(source: dict[str, Any]) -> str | None:
    """Why the source cannot be read now, or None; only what is cheap and safe to ask (a
    file's existence and read permission). An HTTP source is not probed: asking an upstream
    on every listing would load it, and it answers when a transfer reads it."""
    if source.get("type") != "file":
        return None
    path = Path(str(source.get("path", "")))
    if not path.is_file():
        return f"{SOURCE_MISSING}: file {path} not found"
    if not os.access(path, os.R_OK):
        return f"{SOURCE_MISSING}: file {path} is not readable"
    return None


# Upstream URLs whose last read failed, and why (this process's view): `datasets list` shows
# them without probing the upstream; a read that succeeds clears the entry.
_failing: dict[str, str] = {}


def problem(source: dict[str, Any]) -> str | None:
    """For listings: why the source is unreachable (a file gone or unreadable, an upstream
    whose last read here failed), or None when nothing is known against it."""
    if source.get("type") == "http":
        return _failing.get(str(source.get("url")))
    return unavailable(source)


def require(source: dict[str, Any], what: str) -> None:
    """Raise SourceMissing (and warn the operator, naming the path) if the source is gone."""
    why = unavailable(source)
    if why is not None:
        log.warning("%s: %s", what, why)
        raise SourceMissing()


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
        try:
            fh = Path(source["path"]).open("rb")  # noqa: SIM115 (closed by `with fh` below)
        except OSError as exc:
            log.warning("%s: file %s cannot be opened: %s", SOURCE_MISSING, source["path"], exc)
            raise SourceMissing() from exc
        with fh:
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
                _failing[url] = f"upstream unreachable: the last read answered HTTP {resp.status}"
                raise PeerError(
                    f"the upstream source answered HTTP {resp.status}",
                    retry=resp.status >= 500 or resp.status in (408, 429),
                )
            _failing.pop(url, None)
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
        _failing[url] = "upstream unreachable: the last read failed"
        raise PeerError("the upstream source could not be read", retry=True) from exc
