"""Verifiable credentials in the DCP 1.0 style: JWT VCs, status lists, presentations."""
