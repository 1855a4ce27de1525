"""Use cases: eventsourcing Applications with command and query methods."""
