"""Who we are (keys, DID) and how we prove it to peers (self-issued tokens, signatures)."""
