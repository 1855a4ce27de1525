"""The log itself: the signing keys auditors take from it."""
