"""ER assist: embedder, hnswlib indexes, vector store, record files."""
