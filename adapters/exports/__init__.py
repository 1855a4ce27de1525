"""Governed exports: Rego engines and sandbox, DLP, the exports view."""
