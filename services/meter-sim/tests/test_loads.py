"""Load models (loads.py) held to published ranges: the demo world (realism report figures) and small
synthetic fleets for single appliances, climates and demand response. In-process, no broker or database.

The demo world is simulated minute by minute for two weekdays of each season (Tuesday and Wednesday of
the weeks from 16 June and 15 December 2025, seed 42): the full weeks are `gridsim realism`'s job.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from gridsim_meter_sim import domain, loads, realism
from gridsim_meter_sim.domain import DerRow, MeterRow
from gridsim_meter_sim.world import default_world_path, read_world

SF = (37.77, -122.42)
PHOENIX = (33.45, -112.07)
DELHI = (28.61, 77.21)


@pytest.fixture(scope="module")
def demo() -> tuple[realism.WorldFleet, realism.Season, realism.Season]:
    w = realism.world_fleet(read_world(default_world_path()), 42)
    summer = realism.season_run(w, "summer", days=2, first_day=1, supply=False)
    winter = realism.season_run(w, "winter", days=2, first_day=1, supply=False)
    return w, summer, winter


def _figures(demo: tuple[realism.WorldFleet, realism.Season, realism.Season]) -> dict[str, realism.Figure]:
    return {f.what: f for f in realism.load_figures(*demo)}


def test_the_demo_worlds_homes_have_elcap_like_aggregate_shapes(demo) -> None:  # type: ignore[no-untyped-def]
    figures = _figures(demo)
    for season in ("summer", "winter"):
        ratio = next(
            f for w, f in figures.items() if w.startswith(f"homes, weekday hourly peak/min ({season}")
        )
        assert ratio.value <= 3.5, ratio
        assert figures[f"homes, weekday load factor ({season})"].value >= 0.5
        assert 17 <= figures[f"homes, weekday peak hour ({season}, local)"].value <= 21
        peak = figures[f"homes, coincident 15-min peak per home ({season})"].value
        assert 0.8 <= peak <= 2.0


def test_the_demo_worlds_appliances_use_what_surveys_measure(demo) -> None:  # type: ignore[no-untyped-def]
    figures = _figures(demo)
    assert 100 <= figures["homes, median always-on load (1-min minimum)"].value <= 300
    for season in ("summer", "winter"):
        assert 8.0 <= figures[f"EV, energy per EV per day ({season})"].value <= 12.0
        assert 0.25 <= figures[f"kettle, energy per kettle per day ({season})"].value <= 0.6
        assert 0.15 <= figures[f"microwave, energy per day ({season})"].value <= 0.45
        assert 0.8 <= figures[f"refrigerator, energy per day ({season})"].value <= 2.2
    assert 0.5 <= figures["EV, charging sessions per EV per day (summer)"].value <= 1.2


def test_san_francisco_offices_use_about_as_much_in_june_as_in_december(demo) -> None:  # type: ignore[no-untyped-def]
    ratio = _figures(demo)["offices, June/December daily energy (San Francisco)"].value
    assert 0.7 <= ratio <= 1.4


def test_every_figure_of_the_demo_world_is_in_range(demo) -> None:  # type: ignore[no-untyped-def]
    bad = [f for f in realism.load_figures(*demo) if not f.ok]
    assert not bad, bad


# ------------------------------------------------------------------------------ synthetic fleets
def _fleet(
    appliances: list[tuple[str, int]], homes: int = 200, where: tuple[float, float] = SF, kind: str = "home"
) -> domain.Fleet:
    entries = realism.catalogue()
    meters = [
        MeterRow(i, f"M{i}", "consumer", kind, "realistic", 1.0, 0.0, True, where[0], where[1], 1, "t", 500.0, "f", "u")
        for i in range(1, homes + 1)
    ]  # fmt: skip
    ders = []
    for i in range(1, homes + 1):
        for name, count in appliances:
            c = entries[name.lower()]
            ders.append(
                DerRow(
                    i, c.profile, c.role, c.base_kwh_per_min, c.power_factor, count, None, appliance=c.name
                )
            )
    return domain.build_fleet(3, meters, ders)


def _day(tz: str, y: int, m: int, d: int, days: int = 1) -> np.ndarray:  # type: ignore[type-arg]
    t0 = int(datetime(y, m, d, tzinfo=ZoneInfo(tz)).timestamp())
    return t0 + 60 * np.arange(1440 * days, dtype=np.int64)


def test_a_kettle_boils_a_few_minutes_at_full_power() -> None:
    fleet = _fleet([("Electric Kettle", 1)])
    kw = loads.power(fleet.loads, _day("America/Los_Angeles", 2025, 3, 4, 3), only="kettle")[0]
    rated = 0.03333 * 60  # the catalogue's kettle
    assert np.all(np.isclose(kw, 0.0) | np.isclose(kw, rated))  # full power or off: no fractions of a kettle
    per_day = kw.sum() / 60.0 / kw.shape[1] / 3
    assert 0.3 <= per_day <= 0.5
    on = kw > 0
    starts = (on[1:] & ~on[:-1]).sum()
    assert on.sum() / starts == pytest.approx(3.0, abs=0.2)  # each boil lasts ~3 minutes
    # homes do not switch together: at most a small share of kettles are on in any minute
    assert on.mean(axis=1).max() < 0.15


def test_an_ev_charges_once_a_day_from_what_was_driven() -> None:
    fleet = _fleet([("EV Charger (7.2 kW)", 1)], homes=200)
    kw = loads.power(fleet.loads, _day("America/Los_Angeles", 2025, 3, 3, 4), only="ev")[0]  # Mon-Thu
    per_day = kw.sum() / 60.0 / 200 / 4
    assert 8.0 <= per_day <= 12.0
    on = kw > 0
    sessions = (on[1:] & ~on[:-1]).sum() / 200 / 4
    assert 0.6 <= sessions <= 1.0
    assert np.all(np.isclose(kw, 0.0) | np.isclose(kw, 7.2))  # at the charger's rating


def test_cooling_follows_the_climate() -> None:
    ac = [("Air Conditioner (1.5 Ton)", 1)]
    sf = loads.power(_fleet(ac, 100, SF).loads, _day("America/Los_Angeles", 2025, 7, 15), only="ac")[0]
    phoenix = loads.power(_fleet(ac, 100, PHOENIX).loads, _day("America/Phoenix", 2025, 7, 15), only="ac")[0]
    delhi = loads.power(_fleet(ac, 100, DELHI).loads, _day("Asia/Kolkata", 2025, 5, 20), only="ac")[0]
    per_home = {k: v.sum() / 60.0 / 100 for k, v in (("sf", sf), ("phoenix", phoenix), ("delhi", delhi))}
    assert per_home["sf"] < 1.0  # San Francisco in July: little or no cooling
    assert per_home["phoenix"] > 10.0  # Phoenix in July: a lot
    night = delhi[: 5 * 60].sum() / 60.0 / 100  # Delhi in May, 00:00-05:00 local: AC runs at night
    assert night > 1.5


def test_heating_follows_the_season_and_sets_back_at_night() -> None:
    fleet = _fleet([("Heat Pump (3 kW)", 1)], 100, SF)
    january = loads.power(fleet.loads, _day("America/Los_Angeles", 2025, 1, 14), only="heat_pump")[0]
    july = loads.power(fleet.loads, _day("America/Los_Angeles", 2025, 7, 15), only="heat_pump")[0]
    assert january.sum() > 5 * july.sum()
    morning = january[6 * 60 : 9 * 60].mean()
    night = january[1 * 60 : 4 * 60].mean()
    assert morning > night  # warm-up after the night setback


def test_water_heating_needs_more_energy_with_colder_mains() -> None:
    fleet = _fleet([("Electric Geyser", 1)], 200, SF)
    summer = loads.power(fleet.loads, _day("America/Los_Angeles", 2025, 8, 5, 2), only="water_heater")[0]
    winter = loads.power(fleet.loads, _day("America/Los_Angeles", 2025, 2, 4, 2), only="water_heater")[0]
    per_day = winter.sum() / 60.0 / 200 / 2
    assert 5.0 <= per_day <= 14.0
    assert winter.sum() > summer.sum()
    # mains temperature (NREL) lags the air and stays within its seasons
    climate = fleet.loads.climates[0]
    feb, aug = (loads.mains_temperature_c(climate, _day("UTC", 2025, m, 5)[:1])[0] for m in (2, 8))
    assert 10.0 < feb < aug < 25.0


def test_always_on_load_is_lognormal() -> None:
    fleet = _fleet([("Refrigerator", 1)], 1000)
    base = loads.power(fleet.loads, _day("UTC", 2025, 3, 4)[:1], only="always_on")[0][0]
    assert 0.09 <= np.median(base) <= 0.13  # + appliance standby: ~130 W (ELCAP, California)
    assert np.percentile(base, 5) > 0.04
    assert np.percentile(base, 95) < 0.3


def test_a_series_equals_tick_by_tick() -> None:
    fleet = _fleet([("Electric Kettle", 1), ("EV Charger (7.2 kW)", 1), ("Heat Pump (3 kW)", 1)], 30)
    minutes = _day("America/Los_Angeles", 2025, 12, 16)[::37]
    series = loads.power(fleet.loads, minutes)[0]
    ticks = np.array([loads.power(fleet.loads, int(t))[0] for t in minutes])
    np.testing.assert_allclose(series, ticks, rtol=0, atol=1e-12)


def test_the_engines_slot_memo_gives_the_uncached_figures_through_jumps_and_daylight_saving() -> None:
    # One instant at a time (the engine) redraws only instances whose slot changed (loads._SlotCache);
    # a series recomputes every instance. Minute by minute across the spring-forward hour, then back in
    # time and forward again in odd jumps, both must agree exactly.
    fleet = _fleet([("Electric Kettle", 2), ("Washing Machine", 1), ("LED Bulb", 6), ("Ceiling Fan", 1)], 40)
    t0 = int(datetime(2025, 3, 9, 1, 0, tzinfo=ZoneInfo("America/Los_Angeles")).timestamp())
    minutes = np.concatenate(
        [t0 + 60 * np.arange(180), t0 + 60 * np.arange(170, -40, -7), t0 + 60 * np.arange(-40, 400, 13)]
    ).astype(np.int64)
    ticks = np.array([loads.power(fleet.loads, int(t))[0] for t in minutes])
    np.testing.assert_array_equal(loads.power(fleet.loads, minutes)[0], ticks)
    assert ticks.std(axis=0).min() > 0  # every home's load moves: the memo is exercised, not bypassed


def test_the_engines_memos_step_minute_by_minute_exactly_as_a_cold_start() -> None:
    # Stepping to the next minute, the memos take shortcuts: only the slot bucket starting now is redrawn
    # (events, continuous drift) and each unit's place in its cycle is carried forward by one minute
    # instead of a floating-point modulo (refrigerators, thermostats, water-heater standby). Each tick
    # must equal the same instant computed with every memo forgotten, through hours of steps, the
    # spring-forward hour and jumps back and forth.
    appliances = [("Refrigerator", 1), ("Heat Pump (3 kW)", 1), ("Air Conditioner (1.5 Ton)", 1),
                  ("Electric Geyser", 1), ("Electric Kettle", 2), ("Television (LED)", 1), ("LED Bulb", 6)]  # fmt: skip
    warm = _fleet(appliances, 60, PHOENIX)
    cold = _fleet(appliances, 60, PHOENIX)
    t0 = int(datetime(2025, 3, 9, 1, 0, tzinfo=ZoneInfo("America/Los_Angeles")).timestamp())
    minutes = np.concatenate(
        [t0 + 60 * np.arange(600), t0 + 60 * np.arange(590, 200, -11), t0 + 60 * np.arange(200, 500)]
    )
    for t in minutes.tolist():
        cold.loads.caches.clear()
        cold.loads.positions.clear()
        np.testing.assert_array_equal(loads.power(warm.loads, t), loads.power(cold.loads, t))
    assert warm.loads.positions
    assert all(p.minute == minutes[-1] // 60 for p in warm.loads.positions.values())


# --------------------------------------------------------------------------- demand response (Flex)
def test_flex_curtails_during_the_window_and_rebounds_after() -> None:
    fleet = _fleet([("Heat Pump (3 kW)", 1), ("Electric Geyser", 1), ("EV Charger (7.2 kW)", 1)], 120, SF)
    minutes = _day("America/Los_Angeles", 2025, 1, 14, 2)
    before = loads.power(fleet.loads, minutes)[0].sum(axis=1)
    start = int(minutes[17 * 60])  # 17:00-20:00 local on the first day
    end = int(minutes[20 * 60])
    fleet.loads.flex.curtail(np.arange(120), start, end, hvac_offset_c=3.0, defer_water=True, defer_ev=True)
    after = loads.power(fleet.loads, minutes)[0].sum(axis=1)
    fleet.loads.flex.clear()
    window = slice(17 * 60, 20 * 60)
    rebound = slice(20 * 60, 23 * 60)
    assert after[window].sum() < 0.6 * before[window].sum()
    assert after[rebound].sum() > before[rebound].sum()  # rebound after the event
    # EV energy is moved, not lost
    ev_before = loads.power(fleet.loads, minutes, only="ev")[0].sum()
    fleet.loads.flex.curtail(np.arange(120), start, end, defer_ev=True)
    ev_after = loads.power(fleet.loads, minutes, only="ev")[0].sum()
    fleet.loads.flex.clear()
    assert ev_after == pytest.approx(ev_before, rel=0.02)
    np.testing.assert_array_equal(loads.power(fleet.loads, minutes)[0].sum(axis=1), before)


def test_flex_refuses_an_empty_window_or_a_negative_offset() -> None:
    flex = loads.Flex(3)
    with pytest.raises(ValueError, match="end_s"):
        flex.curtail([0], 100, 100)
    with pytest.raises(ValueError, match="hvac_offset_c"):
        flex.curtail([0], 100, 200, hvac_offset_c=-1.0)


def test_appliances_are_classified_by_name_then_profile() -> None:
    assert loads.classify("Electric Kettle", "cooking") == "kettle"
    assert loads.classify("Microwave Oven", "cooking") == "microwave"
    assert loads.classify("Commercial HVAC (10 kW)", "ac") == "hvac"
    assert loads.classify("Electric Geyser", "geyser") == "water_heater"
    assert loads.classify("", "laundry") == "washer"
    assert loads.classify("something new", "no-such-profile") == "constant"
