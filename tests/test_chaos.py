"""The chaos campaign (bench/chaos.py) on real servers and service processes: faults injected at random
(seeded) while the demo world is stepped, then every reading, rollup and bill compared with a fault-free
run of the same seed. A short campaign runs by default; ``make chaos`` runs the long one (issue 16)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("mosquitto") is None, reason="the campaign restarts a private Mosquitto"),
]


def _chaos() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "bench" / "chaos.py"
    spec = importlib.util.spec_from_file_location("gridsim_chaos", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _assert_identical(report: object) -> None:
    assert report.differences == [], report.differences[:5]  # type: ignore[attr-defined]
    assert report.missing == 0  # type: ignore[attr-defined]
    assert report.readings_compared > 0  # type: ignore[attr-defined]
    assert report.rollups_compared > 0  # type: ignore[attr-defined]
    assert report.bills_compared > 0  # type: ignore[attr-defined]


@pytest.mark.timeout(900)
async def test_a_short_campaign_stores_exactly_what_the_fault_free_run_stores() -> None:
    chaos = _chaos()
    # Only the services whose output is compared: each one more costs seconds of start-up per run.
    report = await chaos.campaign(
        seed=7,
        intervals=6,
        faults_per_kind=1,
        freeze_s=1.0,
        kinds=("kill_aggregator", "broker_restart"),
        services=("meter-sim", "aggregator", "billing"),
    )
    assert sorted(f.kind for f in report.faults) == ["broker_restart", "kill_aggregator"]
    _assert_identical(report)


@pytest.mark.slow
@pytest.mark.timeout(7200)
async def test_every_kind_of_fault_several_times() -> None:
    chaos = _chaos()
    report = await chaos.campaign(seed=42, intervals=120, faults_per_kind=3, freeze_s=5.0)
    assert len(report.faults) == 3 * len(chaos.KINDS)
    _assert_identical(report)
