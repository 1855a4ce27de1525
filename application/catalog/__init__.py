"""Catalog use cases: the dataset registry."""
