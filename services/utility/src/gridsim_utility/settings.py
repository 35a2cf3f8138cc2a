"""Settings of the utility service: the project's one settings model (GRIDSIM_* variables)."""

from gridsim_shared.settings import Settings

__all__ = ["Settings"]
