"""P-256 signing keys and DSSE envelopes."""
