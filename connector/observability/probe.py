"""`python -m connector.observability.probe [healthz|readyz]`: the container's HEALTHCHECK.

Slim images have no curl, and the port, address and TLS of the public listener come from the
configuration, so the probe reads the same settings the server does (CONNECTOR_CONFIG and the
CONNECTOR_* environment) and asks its own listener. Exit status 0 means healthy.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.request
from pathlib import Path

from connector.config import load_settings
from connector.errors import ConfigError

_ANY = {"0.0.0.0", "::", "[::]", ""}


def probe_url(path: str) -> tuple[str, ssl.SSLContext | None]:
    """The local URL of the public listener's `path`, and how to speak TLS to it."""
    config = os.environ.get("CONNECTOR_CONFIG")
    settings = load_settings(Path(config) if config else None)
    host = "127.0.0.1" if settings.public_host in _ANY else settings.public_host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    if not settings.tls_cert:
        return f"http://{host}:{settings.public_port}/{path}", None
    # Our own process on a local address: its certificate names the public host, not this one.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return f"https://{host}:{settings.public_port}/{path}", ctx


def main(argv: list[str]) -> int:
    path = argv[0] if argv else "healthz"
    if path not in ("healthz", "readyz"):
        print("usage: python -m connector.observability.probe [healthz|readyz]", file=sys.stderr)
        return 2
    try:
        url, ctx = probe_url(path)
        with urllib.request.urlopen(url, timeout=5, context=ctx) as resp:
            print(resp.read().decode(errors="replace"))
            return 0
    except ConfigError as exc:
        print(exc, file=sys.stderr)
    except OSError as exc:  # refused, timed out, or an HTTP error status (503: not ready)
        print(f"{path}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
