"""Read side: projections that fold the event log into query-ready views."""
