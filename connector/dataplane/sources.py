"""Where a dataset's bytes come from: a local file or an upstream HTTP URL, in chunks."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import aiohttp

from connector.egress import Egress, EgressRefused
from connector.errors import BadRequest, PeerError

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
    try:
        async with egress.request("GET", source["url"], headers=headers, timeout=timeout) as resp:
            if resp.status not in (200, 206):
                raise PeerError(f"upstream {source['url']} answered {resp.status}", retry=True)
            # an upstream that ignores Range sends everything: skip what was delivered
            skip = offset if resp.status == 200 else 0
            async for chunk in resp.content.iter_chunked(chunk_size):
                if skip >= len(chunk):
                    skip -= len(chunk)
                    continue
                yield chunk[skip:] if skip else chunk
                skip = 0
    except EgressRefused as exc:
        raise PeerError(f"upstream {source['url']} refused: {exc.detail}", retry=False) from exc
    except aiohttp.ClientError as exc:
        raise PeerError(f"upstream {source['url']} failed: {exc!r}", retry=True) from exc
