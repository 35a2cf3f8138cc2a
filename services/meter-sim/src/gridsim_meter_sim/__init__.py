"""gridsim meter-sim service."""
