"""Long-running entry points: the DR drill, its load, the autopilot simulator."""
