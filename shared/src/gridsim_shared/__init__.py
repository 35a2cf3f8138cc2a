"""gridsim: the project library shared by every service."""
