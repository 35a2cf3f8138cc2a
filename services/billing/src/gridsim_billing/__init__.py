"""gridsim billing service."""
