"""How often meter-sim saves the registers: every SAVE_EVERY_S while a save is quick, and no more than
SAVE_DUTY of the time when it is slow (five million meters' upsert took 55-150 s; saved back to back it
held PostgreSQL's core); forced saves at once (docs/grid-health.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from gridsim_meter_sim import outage_repository
from gridsim_meter_sim.grid_health import SAVE_DUTY, SAVE_EVERY_S, GridHealth
from gridsim_meter_sim.registers import Registers


@dataclass
class Saving:
    """A GridHealth whose saves take ``took`` seconds of a fake monotonic clock (``now``)."""

    health: GridHealth
    now: float = 1000.0
    took: float = 0.0
    saves: list[float] = field(default_factory=list)  # when each save started

    async def run(self, seconds: float) -> None:
        """Ask for a save every second (as the tick loop does, at most), for ``seconds``."""
        end = self.now + seconds
        while self.now < end:
            await self.health.save()
            self.now += 1.0


@pytest.fixture
def saving(monkeypatch: pytest.MonkeyPatch) -> Saving:
    state = Saving(GridHealth(pool=None, bus=None, monotonic=lambda: state.now))  # type: ignore[arg-type]
    ids = np.arange(3, dtype=np.int64)
    state.health.registers = Registers(ids, np.zeros(3), np.zeros(3), np.zeros(3))
    state.health._as_of = datetime(2025, 6, 20, tzinfo=UTC)  # as apply() leaves it after an interval

    async def save_registers(_pool: Any, _registers: Registers, _as_of: datetime) -> None:
        state.saves.append(state.now)
        state.now += state.took

    monkeypatch.setattr(outage_repository, "save_registers", save_registers)
    return state


async def test_quick_saves_every_five_seconds(saving: Saving) -> None:
    await saving.run(60.0)
    assert len(saving.saves) == 60 / SAVE_EVERY_S
    assert set(np.diff(saving.saves).tolist()) == {SAVE_EVERY_S}


async def test_slow_saves_take_at_most_their_duty(saving: Saving) -> None:
    saving.took = 30.0  # each save 30 s: the next starts 300 s after this one started
    await saving.run(3600.0)
    assert len(saving.saves) == 12
    # Start to start at least took / duty: saving is at most that share of each period.
    assert min(np.diff(saving.saves)) >= saving.took / SAVE_DUTY

    # Forced (the engine stopping, a command): saved at once, whatever the last one took.
    before = len(saving.saves)
    await saving.health.save(force=True)
    assert len(saving.saves) == before + 1
