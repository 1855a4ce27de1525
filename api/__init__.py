"""HTTP API (litestar), auth, error mapping, observability and the CLI."""
