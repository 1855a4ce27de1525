"""DR use cases: drills and the replica-lag alert."""
