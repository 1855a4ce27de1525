"""The catalog: datasets in the registry and their lineage graph."""
