"""Invoices computed from the countersigned metering chain and the agreed price terms."""
