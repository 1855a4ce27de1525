"""The auditor's tools: log export, tenant slices, offline proof checks."""
