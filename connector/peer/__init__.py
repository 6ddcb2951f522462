"""Talking to another participant: signed outgoing calls, which URLs are whose, and who is
calling us. Below every protocol package (dsp, metering, usage, catalog, authority) that
calls a peer or answers one."""
