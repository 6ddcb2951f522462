"""Moved to connector/peer/client.py (below the packages that call peers); kept for the
modules being rewritten in parallel. Import from connector.peer.client."""

from connector.peer.client import TIMEOUT, DspClient, NotTheAudience

__all__ = ["TIMEOUT", "DspClient", "NotTheAudience"]
