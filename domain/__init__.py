"""Pure domain model: aggregates, their events, value objects and domain errors."""
