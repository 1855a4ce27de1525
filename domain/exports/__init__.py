"""Governed exports: the Export aggregate and policies as events."""
