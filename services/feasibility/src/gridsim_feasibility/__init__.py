"""gridsim feasibility service."""
