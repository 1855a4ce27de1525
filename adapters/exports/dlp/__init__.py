"""The streaming DLP transformer (CSV and JSON Lines)."""
