"""Signed, hash-chained metering of what the data plane delivered, and its receipts."""
