"""The event log: eventsourcing recorders with a global hash chain."""
