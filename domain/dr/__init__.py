"""Disaster recovery: failover drills and the replica-lag alert."""
