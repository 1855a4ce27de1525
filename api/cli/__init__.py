"""The `conductor` command, one module per command group."""
