"""gridsim aggregator service."""
