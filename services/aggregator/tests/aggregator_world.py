"""A small world for aggregator tests, and readings to publish as meter-sim would."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from gridsim_shared import channels, topics
from gridsim_shared.bus import Bus
from gridsim_shared.db import connect
from gridsim_shared.ids import TransformerPath
from gridsim_shared.messages import ClockState, ReadingBatch
from gridsim_shared.settings import Settings

T0 = datetime(2025, 6, 20, tzinfo=UTC)


@dataclass
class World:
    """Ids of what :func:`make_world` created."""

    utility: int
    feeder: int
    transformers: dict[str, int]
    meters: dict[str, int]  # code → id
    leaves: dict[str, list[str]]  # transformer code → leaf meter codes that report
    off: list[str] = field(default_factory=list)

    def path(self, transformer: str) -> TransformerPath:
        return TransformerPath("u1", "f1", transformer)


async def make_world(settings: Settings) -> World:
    """u1 → f1 → t1 (50 kVA: m1, m2, m3), t2 (25 kVA: m4, m5 OFF).

    Parents: p1 = m1 + m2; p2 = p1 + m4 (depth 2, across transformers); p3 = m5 (OFF, reads zero).
    """
    async with await connect(settings.db.url, settings.db.schema_name, autocommit=True) as conn:

        async def node(code: str, level: str, parent: int | None, kva: float | None) -> int:
            cur = await conn.execute(
                "insert into grid_nodes (code, name, level, parent_id, capacity_kva) values (%s, %s, %s, %s, %s) "
                "returning id",
                (code, code.upper(), level, parent, kva),
            )
            row = await cur.fetchone()
            assert row is not None
            return int(row[0])

        async def meter(code: str, transformer: int | None, parent: int | None = None, k: float = 1.0) -> int:
            cur = await conn.execute(
                "insert into meters (code, transformer_id, parent_id, load_factor_consumption) "
                "values (%s, %s, %s, %s) returning id",
                (code, transformer, parent, k),
            )
            row = await cur.fetchone()
            assert row is not None
            return int(row[0])

        u = await node("u1", "utility", None, None)
        f = await node("f1", "feeder", u, None)
        t1 = await node("t1", "transformer", f, 50.0)
        t2 = await node("t2", "transformer", f, 25.0)
        p2 = await meter("P2", t1)
        p1 = await meter("P1", t1, p2)
        p3 = await meter("P3", t2)
        ids = {"P1": p1, "P2": p2, "P3": p3}
        ids["M1"] = await meter("M1", t1, p1)
        ids["M2"] = await meter("M2", t1, p1)
        ids["M3"] = await meter("M3", t1)
        ids["M4"] = await meter("M4", t2, p2)
        ids["M5"] = await meter("M5", t2, p3, k=0.0)
    return World(u, f, {"t1": t1, "t2": t2}, ids, {"t1": ["M1", "M2", "M3"], "t2": ["M4"]}, off=["M5"])


def make_batch(
    world: World, transformer: str, ts: datetime, seed: int = 0, codes: list[str] | None = None
) -> ReadingBatch:
    """Plausible readings for the transformer's reporting meters (M3 is a prosumer)."""
    rng = np.random.default_rng(seed + int(ts.timestamp()) // 60)
    codes = codes if codes is not None else world.leaves[transformer]
    n = len(codes)
    kwh = rng.uniform(0.005, 0.05, n)
    pf = rng.uniform(0.8, 1.0, n)
    kvah = kwh / pf
    volts = rng.uniform(230, 250, n)
    prosumer = [c == "M3" for c in codes]
    prod = [float(x) if p else None for x, p in zip(rng.uniform(0.001, 0.02, n), prosumer, strict=True)]
    return ReadingBatch(
        timestamp=ts,
        interval_s=60,
        meter_id=[world.meters[c] for c in codes],
        meter_code=codes,
        consumption_kWh=kwh.tolist(),
        production_kWh=prod,
        consumption_kVAh=kvah.tolist(),
        production_kVAh=[None if p is None else p / 0.95 for p in prod],
        avg_current=(kvah * 60 * 1000 / volts).tolist(),
        avg_voltage=volts.tolist(),
        reactive_power_kVAR=np.sqrt(kvah**2 - kwh**2).tolist(),
        power_factor=pf.tolist(),
    )


async def publish_interval(
    bus: Bus, world: World, ts: datetime, *, clock: bool = True
) -> dict[str, ReadingBatch]:
    """Every transformer's batch for ``ts``, then the clock saying ``ts`` is published."""
    batches = {t: make_batch(world, t, ts) for t in world.leaves}
    for t, batch in batches.items():
        await bus.publish(channels.BATCH, batch, world.path(t))
    if clock:
        await publish_clock(bus, ts)
    return batches


async def publish_clock(bus: Bus, ts: datetime, world_version: int = 0) -> None:
    await bus.publish(
        channels.CLOCK,
        ClockState(
            current_datetime=ts + timedelta(minutes=1),
            state="paused",
            speed=1440,
            interval_s=60,
            tick=int((ts - T0).total_seconds() // 60) + 1,
            last_published=ts,
            world_version=world_version,
        ),
        topics.NoPath(),
    )


async def fetch(settings: Settings, query: str, *args: Any) -> list[tuple[Any, ...]]:
    async with await connect(settings.db.url, settings.db.schema_name, autocommit=True) as conn:
        cur = await conn.execute(query, args or None)
        return await cur.fetchall()
