"""Counter-based randomness lives in :mod:`gridsim_shared.randomness` (climate and weather use it too)."""

from gridsim_shared.randomness import (
    meter_keys,
    mix64,
    normal,
    normal_from,
    normal_streams,
    stream_keys,
    uniform,
    uniform_from,
)

__all__ = [
    "meter_keys",
    "mix64",
    "normal",
    "normal_from",
    "normal_streams",
    "stream_keys",
    "uniform",
    "uniform_from",
]
