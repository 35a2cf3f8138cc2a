"""Service-voltage standards: the bands by place."""

from __future__ import annotations

import pytest

from gridsim_shared import standards


def test_ansi_c84_1_ranges_on_120_and_240_v() -> None:
    ansi = standards.standard_named("ansi-c84.1")
    assert ansi.band(120.0) == (114.0, 126.0)
    assert ansi.band(120.0, "B") == (110.0, 127.0)
    assert ansi.band(240.0) == (228.0, 252.0)


def test_bands_follow_the_place() -> None:
    assert standards.band_at(37.77, -122.42) == (228.0, 252.0)  # San Francisco: ANSI C84.1 Range A, 240 V
    assert standards.band_at(52.5, 13.4) == (207.0, 253.0)  # Berlin: EN 50160 230 V ±10 %
    assert standards.band_at(52.5, 13.4, "B") == (195.5, 253.0)
    assert standards.band_at(28.6, 77.2) == (216.2, 243.8)  # Delhi: ±6 %
    assert standards.band_at(-33.9, 151.2) == (216.2, 253.0)  # Sydney: +10 % / −6 %


def test_unknown_standard_and_range_are_refused() -> None:
    with pytest.raises(KeyError, match="unknown voltage standard 'nema'"):
        standards.standard_named("nema")
    with pytest.raises(ValueError, match="range must be 'A' or 'B'"):
        standards.standard_named("en-50160").band(230.0, "C")
