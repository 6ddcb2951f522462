"""Usage control after delivery: use-time decisions, signed use records, deletion duties with
signed receipts, and agreement termination (docs/usage-control.md)."""
