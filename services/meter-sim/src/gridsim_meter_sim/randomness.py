"""Counter-based randomness lives in :mod:`gridsim_shared.randomness` (climate and weather use it too)."""

from gridsim_shared.randomness import meter_keys, mix64, normal, uniform

__all__ = ["meter_keys", "mix64", "normal", "uniform"]
