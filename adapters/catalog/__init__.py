"""The catalog read model on SQLite and PostgreSQL, lineage stores, data files."""
