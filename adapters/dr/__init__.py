"""Cross-region DR: two PostgreSQL regions, a link relay, routing and drills."""
