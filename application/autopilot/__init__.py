"""The cost/SLO autopilot: budgets, metering, burn, guards, shaping, incidents."""
