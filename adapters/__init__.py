"""The outside world behind small ports: databases, engines, signers, sinks."""
