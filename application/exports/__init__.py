"""Governed exports: the gate, its policies, the pipeline."""
