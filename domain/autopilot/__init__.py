"""Cost and SLO autopilot: tenant budgets and metered usage."""
