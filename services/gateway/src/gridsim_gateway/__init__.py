"""gridsim gateway service."""
