"""Trusted data space connector: DSP 2025-1 peer with enforced usage policies."""

__version__ = "0.1.0"
