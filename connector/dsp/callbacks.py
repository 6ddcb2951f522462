"""Moved to connector/peer/callbacks.py; kept for the modules being rewritten in parallel.
Import from connector.peer.callbacks."""

from connector.peer.callbacks import (
    MAX_CALLBACK,
    belongs_to,
    callback_syntax,
    check_callback,
    on_did_host,
)

__all__ = ["MAX_CALLBACK", "belongs_to", "callback_syntax", "check_callback", "on_did_host"]
