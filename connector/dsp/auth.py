"""Moved to connector/peer/auth.py; kept for the modules being rewritten in parallel.
Import from connector.peer.auth."""

from connector.peer.auth import Authenticator, not_a_member

__all__ = ["Authenticator", "not_a_member"]
