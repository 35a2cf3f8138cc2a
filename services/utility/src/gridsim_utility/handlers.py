"""Every MQTT subscription and command of the utility service, in one place.

Commands (``cmd/utility/{operation}``): ``forecast``, ``forecast_scores``, ``price``, ``create_program``,
``programs``, ``enrol``, ``enrolments``, ``create_event``, ``update_event``, ``cancel_event``, ``events``,
``event``, ``dr_log``, ``dynamic_bill``.
Subscriptions: the retained clock (simulated "now").
Publishes: ``forecast/{model}/{horizon}/{level}/{node}`` and ``price/{level}/{node}`` (retained) each simulated
hour, and a ``dr-event`` :class:`GridEvent` for every event created, changed or cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from psycopg_pool import AsyncConnectionPool

from gridsim_shared import channels
from gridsim_shared.bus import Bus, Router
from gridsim_shared.commands import utility
from gridsim_shared.errors import ClockNotReady, ConflictError, InvalidError, NotFoundError
from gridsim_shared.events import DrEventDetails, DrEventEvent, GridEvent
from gridsim_shared.messages import ClockState, Forecast, ForecastPoint, PricePoint, PriceSignal
from gridsim_shared.schemas.utility import (
    DrEvent,
    DrEventCreate,
    DrEventQuery,
    DrEventRef,
    DrEventUpdate,
    DrLogEntry,
    DynamicBill,
    DynamicBillQuery,
    Enrolment,
    EnrolmentCreate,
    EnrolmentQuery,
    ForecastQuery,
    ForecastRow,
    ForecastView,
    PriceQuery,
    Program,
    ProgramCreate,
    ScoreQuery,
    ScoreRow,
)
from gridsim_shared.topics import EventPath, ForecastPath, NodePath, NoPath
from gridsim_utility import domain, forecaster, programs
from gridsim_utility import repository as repo
from gridsim_utility.repository import Conn, Node
from gridsim_utility.settings import Settings

__all__ = ["Deps", "router"]

_LOGGER = logging.getLogger(__name__)
HOUR = timedelta(hours=1)
# Programme defaults by kind (domain-facts; docs/utility.md): how many respond, how much they shed.
_DEFAULTS = {"ptr": (0.6, 0.3), "dlc": (0.9, 0.8), "cpp": (0.7, 0.4)}
# History behind a refresh: 28 days of training + the scoring window + a week for the naive lag.
_HISTORY_EXTRA_DAYS = domain.TRAIN_DAYS + 8

router: Router[Deps] = Router()


@dataclass
class Live:
    """The latest clock seen, and the last hour forecasts were issued for."""

    clock: ClockState | None = None
    issued_until: datetime | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True)
class Deps:
    """What the handlers need, built once in ``__main__``."""

    settings: Settings
    bus: Bus
    pool: AsyncConnectionPool
    live: Live = field(default_factory=Live)
    # Called with each event created or changed (the OpenADR VTN pushes it to registered VENs).
    on_event: list[Callable[[DrEvent, str], Awaitable[None]]] = field(default_factory=list)
    # Background work started by subscriptions (kept referenced until done).
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


# ---------------------------------------------------------------- subscriptions
@router.subscribe(channels.CLOCK)
async def on_clock(msg: ClockState, _path: NoPath, deps: Deps) -> None:
    """Remember the simulated time."""
    deps.live.clock = msg


@router.subscribe(channels.EVENT, type="transformer_overload")
async def on_overload(msg: GridEvent, path: EventPath, deps: Deps) -> None:
    """An overloaded transformer: an event now for the participants under it, on each programme that
    dispatches on overloads (their own overlapping events keep them out).

    Run as a task: dispatching asks meter-sim for a flexible-load window over the bus, whose replies this subscription
    would otherwise hold up."""
    task = asyncio.create_task(_overload_events(msg, path, deps))
    deps.tasks.add(task)
    task.add_done_callback(deps.tasks.discard)


async def _overload_events(msg: GridEvent, path: EventPath, deps: Deps) -> None:
    async with deps.pool.connection() as conn:
        under = await repo.meters_under(conn, path.subject)
        if not under:
            return
        now = await sim_now(deps, conn)
        hours = deps.settings.utility.auto_event_hours
        for program in await repo.programs(conn):
            if not program["auto_overload"]:
                continue
            body = DrEventCreate(
                program_id=program["id"],
                start=max(now, msg.timestamp),
                duration_min=60 * hours,
                level=3,
                reason=f"transformer {path.subject} overloaded: {msg.message}"[:200],
            )
            try:
                await create_event_as(deps, conn, body, trigger="overload", meters=under)
            except (ConflictError, InvalidError) as exc:
                _LOGGER.info("no overload event on programme %s: %s", program["id"], exc)
            except Exception:  # e.g. meter-sim did not answer: logged; the next overload tries again
                _LOGGER.exception("overload event on programme %s failed", program["id"])


# ---------------------------------------------------------------- helpers
async def sim_now(deps: Deps, conn: Conn) -> datetime:
    """Simulated now: the retained clock, else the stored clock row; 503 before the clock exists."""
    if deps.live.clock is not None:
        return deps.live.clock.current_datetime
    now = await repo.clock_row(conn)
    if now is None:
        msg = "the simulation clock has not started yet (is meter-sim running?)"
        raise ClockNotReady(msg)
    return now


def price_params(settings: Settings) -> domain.PriceParams:
    """The dynamic tariff: billing's rates, its ToU peak (or 1.5 × the grid rate), the utility's RTP."""
    b, u = settings.billing, settings.utility
    base = float(b.grid_rate)
    return domain.PriceParams(
        base_rate=base,
        peak_rate=float(b.tou_peak_rate) if b.tou_peak_rate is not None else round(1.5 * base, 4),
        peak_start_h=b.tou_peak_start_hour,
        peak_end_h=b.tou_peak_end_hour,
        rtp_slope=u.rtp_slope,
        floor_share=u.rtp_floor_share,
        cap_share=u.rtp_cap_share,
    )


async def _node(conn: Conn, code: str | None) -> Node:
    all_nodes = await repo.nodes(conn)
    if code is None:
        utilities = [n for n in all_nodes if n.level == "utility"]
        if not utilities:
            msg = "node: the grid has no utility yet"
            raise NotFoundError(msg, field="node")
        return utilities[0]
    for n in all_nodes:
        if n.code == code.lower():
            return n
    msg = f"node: no grid node with code {code!r}"
    raise NotFoundError(msg, field="node")


# ---------------------------------------------------------------- refresh (called by __main__)
async def refresh(deps: Deps) -> bool:
    """Issue the forecasts of every complete hour not yet issued, publish them and the prices, and evaluate
    ended DR events. True when something was issued."""
    async with deps.live.lock, deps.pool.connection() as conn:
        rolled = await repo.rolled_until(conn)
        if rolled is None:
            return False
        issue_at = forecaster.floor_hour(rolled)
        if deps.live.issued_until is not None and issue_at <= deps.live.issued_until:
            return False
        u = deps.settings.utility
        all_nodes = [n for n in await repo.nodes(conn) if n.level in ("utility", "feeder", "transformer")]
        history = await forecaster.load_history(
            conn, all_nodes, issue_at, u.score_window_days + _HISTORY_EXTRA_DAYS, seed=deps.settings.sim.seed
        )
        # The scoring window's missing forecasts are made once, by the first refresh after a start; later
        # ones need only the issue times since the last. A forecast one could not make then (too little
        # history) cannot be made now either: it may use only what was known at its issue time.
        backfill_from = issue_at - timedelta(days=u.score_window_days)
        if deps.live.issued_until is not None:
            backfill_from = max(backfill_from, deps.live.issued_until + HOUR)
        done = await repo.forecast_targets(conn, backfill_from, issue_at + 25 * HOUR)
        issued = await asyncio.to_thread(forecaster.issue, history, all_nodes, issue_at, done, backfill_from)
        async with conn.transaction():
            await repo.insert_forecasts(
                conn,
                [
                    (f.node_id, f.horizon, f.model, f.target, f.issued_at, f.load_kwh, f.net_load_kwh)
                    for f in issued
                ],
            )
        deps.live.issued_until = issue_at
        stored = await repo.forecasts(conn, [n.id for n in all_nodes], None, issue_at, issue_at + 25 * HOUR)
        cpp = [e for e in await repo.events_between(conn, issue_at, issue_at + 24 * HOUR) if e["cpp_rate"]]
        await _auto_events(deps, conn, history, nodes=all_nodes, stored=stored, issue_at=issue_at)
        await _evaluate(deps, conn, issue_at)
    await _publish(deps, all_nodes, stored, history=history, issue_at=issue_at, cpp=cpp)
    return bool(issued)


async def _publish(
    deps: Deps,
    nodes: list[Node],
    stored: list[dict[str, Any]],
    *,
    history: forecaster.History,
    issue_at: datetime,
    cpp: list[dict[str, Any]],
) -> None:
    params = price_params(deps.settings)
    stored_by_node = forecaster.by_node(stored)
    for node in nodes:
        mine = stored_by_node.get(node.id, [])
        for horizon in domain.HORIZONS:
            for model in domain.MODELS:
                points = [
                    ForecastPoint(timestamp=r["target"], load_kWh=round(r["load_kwh"], 4),
                                  net_load_kWh=round(r["net_load_kwh"], 4))
                    for r in mine
                    if r["node_id"] == node.id and r["horizon"] == horizon and r["model"] == model
                    and r["target"] >= issue_at
                ]  # fmt: skip
                if not points:
                    continue
                msg = Forecast(
                    level=node.level,  # type: ignore[arg-type]
                    node_id=node.id,
                    node_code=node.code,
                    horizon=horizon,
                    model=model,
                    issued_at=issue_at,
                    points=points,
                )
                await deps.bus.publish(
                    channels.FORECAST, msg, ForecastPath(model, horizon, node.level, node.code)
                )
        if node.level in ("utility", "feeder"):
            signal = _signal(deps, params, history, node, stored=mine, issue_at=issue_at, cpp=cpp)
            await deps.bus.publish(channels.PRICE, signal, NodePath(node.level, node.code))


def _signal(
    deps: Deps,
    params: domain.PriceParams,
    history: forecaster.History,
    node: Node,
    *,
    stored: list[dict[str, Any]],
    issue_at: datetime,
    cpp: list[dict[str, Any]],
) -> PriceSignal:
    schedule = [
        PricePoint(timestamp=t, tou_rate=tou, price=price, period=period)  # type: ignore[arg-type]
        for t, tou, price, period in forecaster.price_schedule(
            params,
            history,
            node,
            stored=stored,
            issue_at=issue_at,
            cpp=cpp,
        )
    ]
    return PriceSignal(
        level=node.level,  # type: ignore[arg-type]
        node_code=node.code,
        currency=deps.settings.billing.currency,
        issued_at=issue_at,
        current=schedule[0],
        schedule=schedule,
    )


async def _auto_events(
    deps: Deps,
    conn: Conn,
    history: forecaster.History,
    *,
    nodes: list[Node],
    stored: list[dict[str, Any]],
    issue_at: datetime,
) -> None:
    """A forecast-peak event on each programme whose threshold the utility's day-ahead forecast crosses."""
    utility = next((n for n in nodes if n.level == "utility"), None)
    if utility is None:
        return
    target = issue_at + 24 * HOUR
    row = next(
        (r for r in stored if r["node_id"] == utility.id and r["horizon"] == "day-ahead"
         and r["model"] == "regression" and r["target"] == target),
        None,
    )  # fmt: skip
    known = history.load[utility.id][: history.index(issue_at)][-domain.TRAIN_DAYS * 24 :]
    if row is None or not np.isfinite(known).any():
        return
    peak = float(np.nanmax(known))
    for program in await repo.programs(conn):
        share = program["auto_peak_share"]
        if share is None or row["load_kwh"] < share * peak or not program["participants"]:
            continue
        if any(
            e["program_id"] == program["id"] for e in await repo.events_between(conn, target, target + HOUR)
        ):
            continue
        hours = deps.settings.utility.auto_event_hours
        reason = f"day-ahead forecast {row['load_kwh']:.1f} kWh ≥ {share:g} × 28-day peak {peak:.1f} kWh"
        try:
            await create_event_as(
                deps,
                conn,
                DrEventCreate(
                    program_id=program["id"], start=target, duration_min=60 * hours, level=2, reason=reason
                ),
                trigger="forecast-peak",
                now=issue_at,
            )
        except (ConflictError, InvalidError) as exc:
            _LOGGER.info("no forecast-peak event on programme %s: %s", program["id"], exc)


async def _evaluate(deps: Deps, conn: Conn, metered_until: datetime) -> None:
    """Measure every event whose window and rebound hours are metered (CAISO baseline, credits)."""
    for event_id in await repo.unevaluated(conn, metered_until):
        event = await repo.event(conn, event_id)
        assert event is not None
        program = await repo.program(conn, event["program_id"])
        assert program is not None
        results, rebound = await programs.evaluate(conn, event, program)
        async with conn.transaction():
            await repo.set_performance(conn, event_id, results)
            await repo.set_event(conn, event_id, evaluated_sim=metered_until, rebound_kwh=rebound)
            await repo.log(
                conn, metered_until, "event.evaluated", {"event_id": event_id, "rebound_kWh": rebound}
            )


# ---------------------------------------------------------------- forecasts and prices
@router.handles(utility.FORECAST)
async def forecast(query: ForecastQuery, deps: Deps) -> ForecastView:
    """A node's forecasts for one horizon (both models) beside the metered hours."""
    async with deps.pool.connection() as conn:
        node = await _node(conn, query.node)
        last = await repo.latest_target(conn, node.id, query.horizon)
        if last is None:
            return ForecastView(node_id=node.id, node_code=node.code, level=node.level, horizon=query.horizon,
                                issued_at=None, points=[], latest=[])  # fmt: skip
        start = last - (query.hours - 1) * HOUR
        rows = await repo.forecasts(conn, [node.id], query.horizon, start, last + HOUR)
        actual = {t: (c, c - p) for _, t, c, p in await repo.node_hourly(conn, [node.id], start, last + HOUR)}
    by_hour: dict[datetime, dict[str, dict[str, Any]]] = {}
    for r in rows:
        if r["target"] >= start:
            by_hour.setdefault(r["target"], {})[r["model"]] = r
    points = []
    for t in sorted(by_hour):
        models = by_hour[t]
        naive, reg = models.get("seasonal-naive"), models.get("regression")
        metered = actual.get(t)
        points.append(
            ForecastRow(
                timestamp=t,
                seasonal_naive_kWh=_r(naive, "load_kwh"),
                regression_kWh=_r(reg, "load_kwh"),
                actual_kWh=None if metered is None else round(metered[0], 4),
                seasonal_naive_net_kWh=_r(naive, "net_load_kwh"),
                regression_net_kWh=_r(reg, "net_load_kwh"),
                actual_net_kWh=None if metered is None else round(metered[1], 4),
            )
        )
    latest = [
        ForecastPoint(
            timestamp=p.timestamp, load_kWh=p.regression_kWh, net_load_kWh=p.regression_net_kWh or 0.0
        )
        for p in points
        if p.actual_kWh is None and p.regression_kWh is not None
    ]
    return ForecastView(
        node_id=node.id,
        node_code=node.code,
        level=node.level,
        horizon=query.horizon,
        issued_at=max(r["issued_at"] for r in rows),
        points=points,
        latest=latest,
    )


def _r(row: dict[str, Any] | None, key: str) -> float | None:
    return None if row is None else round(row[key], 4)


@router.handles(utility.FORECAST_SCORES)
async def forecast_scores(query: ScoreQuery, deps: Deps) -> list[ScoreRow]:
    """MAPE, WAPE and bias per node, quantity, horizon and model over the rolling window."""
    u = deps.settings.utility
    async with deps.pool.connection() as conn:
        if query.node is None:
            nodes = [n for n in await repo.nodes(conn) if n.level in ("utility", "feeder")]
        else:
            nodes = [await _node(conn, query.node)]
        rolled = await repo.rolled_until(conn)
        if rolled is None or not nodes:
            return []
        end = forecaster.floor_hour(rolled)
        start = end - timedelta(days=u.score_window_days)
        history = await forecaster.load_history(
            conn, nodes, end, u.score_window_days, seed=deps.settings.sim.seed
        )
        stored = forecaster.by_node(await repo.forecasts(conn, [n.id for n in nodes], None, start, end))
    out = []
    for node in nodes:
        for quantity, horizon, model, s in forecaster.scores(history, stored.get(node.id, []), node, start):
            out.append(
                ScoreRow(
                    node_code=node.code,
                    level=node.level,
                    quantity=quantity,  # type: ignore[arg-type]
                    horizon=horizon,  # type: ignore[arg-type]
                    model=model,  # type: ignore[arg-type]
                    mape_pct=_finite(s.mape_pct),
                    wape_pct=_finite(s.wape_pct),
                    bias_pct=_finite(s.bias_pct),
                    hours=s.hours,
                    window_start=start,
                    window_end=end,
                )
            )
    return out


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 3)


@router.handles(utility.PRICE)
async def price(query: PriceQuery, deps: Deps) -> PriceSignal:
    """The current dynamic price of the utility or a feeder and its next 24 hours."""
    async with deps.pool.connection() as conn:
        node = await _node(conn, query.node)
        if node.level not in ("utility", "feeder"):
            msg = f"node: {node.code} is a {node.level}; prices are set per utility and per feeder"
            raise InvalidError(msg, field="node")
        now = forecaster.floor_hour(await sim_now(deps, conn))
        history = await forecaster.load_history(
            conn, [node], now, domain.TRAIN_DAYS, seed=deps.settings.sim.seed
        )
        stored = await repo.forecasts(conn, [node.id], None, now, now + 24 * HOUR)
        cpp = [e for e in await repo.events_between(conn, now, now + 24 * HOUR) if e["cpp_rate"]]
    return _signal(deps, price_params(deps.settings), history, node, stored=stored, issue_at=now, cpp=cpp)


# ---------------------------------------------------------------- programmes
def _program(row: dict[str, Any]) -> Program:
    return Program(
        id=row["id"],
        name=row["name"],
        kind=row["kind"],
        rebate_per_kWh=row["rebate_per_kwh"],
        event_credit=row["event_credit"],
        cpp_rate=row["cpp_rate"],
        compliance=row["compliance"],
        shed_share=row["shed_share"],
        rebound_share=row["rebound_share"],
        auto_peak_share=row["auto_peak_share"],
        auto_overload=row["auto_overload"],
        participants=row["participants"],
        created_at=row["created_at"],
    )


@router.handles(utility.CREATE_PROGRAM)
async def create_program(body: ProgramCreate, deps: Deps) -> Program:
    """A new programme (409 when the name is taken)."""
    compliance, shed = _DEFAULTS[body.kind]
    values = {
        "name": body.name,
        "kind": body.kind,
        "rebate_per_kwh": body.rebate_per_kWh,
        "event_credit": body.event_credit,
        "cpp_rate": body.cpp_rate,
        "compliance": body.compliance if body.compliance is not None else compliance,
        "shed_share": body.shed_share if body.shed_share is not None else shed,
        "rebound_share": body.rebound_share,
        "auto_peak_share": body.auto_peak_share,
        "auto_overload": body.auto_overload,
    }
    async with deps.pool.connection() as conn, conn.transaction():
        now = await sim_now(deps, conn)
        row = await repo.insert_program(conn, values)
        if row is None:
            msg = f"name: a programme named {body.name!r} exists"
            raise ConflictError(msg, field="name")
        await repo.log(conn, now, "program.create", {"program_id": row["id"], **values})
    return _program(row)


@router.handles(utility.PROGRAMS)
async def list_programs(_body: Any, deps: Deps) -> list[Program]:
    """Every programme."""
    async with deps.pool.connection() as conn:
        return [_program(r) for r in await repo.programs(conn)]


async def _program_row(conn: Conn, program_id: int) -> dict[str, Any]:
    row = await repo.program(conn, program_id)
    if row is None:
        msg = f"program_id: no programme {program_id}"
        raise NotFoundError(msg, field="program_id")
    return row


@router.handles(utility.ENROL)
async def enrol(body: EnrolmentCreate, deps: Deps) -> Enrolment:
    """Enrol a meter with flexible load in a programme."""
    async with deps.pool.connection() as conn, conn.transaction():
        await _program_row(conn, body.program_id)
        meter = await repo.resolve_meter(conn, body.meter_id)
        if meter is None:
            msg = f"meter_id: no meter with id or code {body.meter_id!r}"
            raise NotFoundError(msg, field="meter_id")
        flexible, rated = await repo.flexible_load(conn, meter[0])
        if flexible <= 0:
            msg = (
                f"meter_id: meter {meter[1]} has no flexible load (a connected, switched-on EV charger,"
                " water heater, AC, heater or pump)"
            )
            raise InvalidError(msg, field="meter_id")
        now = await sim_now(deps, conn)
        if not await repo.enrol(
            conn, body.program_id, meter[0], flexible_kw=flexible, rated_kw=rated, now=now
        ):
            msg = f"meter_id: meter {meter[1]} is already enrolled in programme {body.program_id}"
            raise ConflictError(msg, field="meter_id")
        await repo.log(conn, now, "enrol", {"program_id": body.program_id, "meter_id": meter[0]})
    return Enrolment(
        program_id=body.program_id, meter_id=meter[0], meter_code=meter[1], flexible_kW=flexible,
        rated_kW=rated, enrolled_at=now,
    )  # fmt: skip


@router.handles(utility.ENROLMENTS)
async def enrolments(query: EnrolmentQuery, deps: Deps) -> list[Enrolment]:
    """A programme's participants."""
    async with deps.pool.connection() as conn:
        await _program_row(conn, query.program_id)
        rows = await repo.enrolments(conn, query.program_id)
    return [
        Enrolment(
            program_id=r["program_id"],
            meter_id=r["meter_id"],
            meter_code=r["meter_code"],
            flexible_kW=r["flexible_kw"],
            rated_kW=r["rated_kw"],
            enrolled_at=r["enrolled_at"],
        )
        for r in rows
    ]


# ---------------------------------------------------------------- events
async def _event_view(deps: Deps, conn: Conn, event_id: int) -> DrEvent:
    event = await repo.event(conn, event_id)
    if event is None:
        msg = f"event_id: no DR event {event_id}"
        raise NotFoundError(msg, field="event_id")
    parts = await repo.participation(conn, [event_id])
    return programs.view(event, parts, await sim_now(deps, conn), event["rebound_kwh"])


async def _announce(deps: Deps, event: DrEvent, action: str) -> None:
    msg = DrEventEvent(
        type="dr-event",
        severity="warning" if action != "cancelled" else "info",
        timestamp=event.start,
        subject=f"dr-{event.id}",
        message=f"DR event {event.id} ({event.program_kind}, level {event.level}) {action}:"
        f" {event.start.isoformat()} to {event.end.isoformat()}",
        data=DrEventDetails(action=action, **event.model_dump(exclude={"participants"})),
    )
    try:
        await deps.bus.publish(channels.EVENT, msg, EventPath("dr-event", msg.subject))
    except Exception:  # stored already; a broker hiccup must not fail the command
        _LOGGER.exception("could not publish DR event %s", event.id)
    for hook in deps.on_event:
        try:
            await hook(event, action)
        except Exception:
            _LOGGER.exception("DR event hook failed for event %s", event.id)


async def create_event_as(
    deps: Deps,
    conn: Conn,
    body: DrEventCreate,
    *,
    trigger: str,
    now: datetime | None = None,
    meters: set[int] | None = None,
) -> DrEvent:
    """Create, check and dispatch an event (operators, forecast peaks and overloads share this); with
    ``meters``, only the programme's participants among them take part."""
    async with deps.live.lock if now is None else _NoLock():
        async with conn.transaction():
            await repo.lock_events(conn)
            program = await _program_row(conn, body.program_id)
            now = now or await sim_now(deps, conn)
            start = body.start.astimezone(UTC)
            end = start + timedelta(minutes=body.duration_min)
            if start < now:
                msg = f"start: {start.isoformat()} is in the past of the simulation clock ({now.isoformat()})"
                raise InvalidError(msg, field="start")
            enrolled = await repo.enrolments(conn, body.program_id)
            if meters is not None:
                enrolled = [e for e in enrolled if e["meter_id"] in meters]
            if not enrolled:
                msg = f"program_id: programme {body.program_id} has no participants{' there' if meters is not None else ''}"
                raise InvalidError(msg, field="program_id")
            clash = await repo.overlapping(conn, [e["meter_id"] for e in enrolled], start, end, None)
            if clash:
                meter, other = clash[0]
                msg = f"start: meter {meter} already takes part in DR event {other} overlapping this window"
                raise ConflictError(msg, field="start")
            event_id = await repo.insert_event(
                conn,
                {"program_id": body.program_id, "start": start, "end": end, "level": body.level,
                 "trigger": trigger, "reason": body.reason, "created_sim": now},
            )  # fmt: skip
            # The window is requested inside the transaction: a failure rolls the event back, so no event
            # exists without its participants' responses.
            parts = await programs.dispatch(
                deps.bus, deps.settings.sim.seed, event_id,
                program=program, enrolled=enrolled, start=start, end=end, level=body.level,
            )  # fmt: skip
            await repo.insert_participation(conn, event_id, parts)
            await repo.log(
                conn,
                now,
                "event.create",
                {"event_id": event_id, "trigger": trigger, **body.model_dump(mode="json")},
            )
        event = await _event_view(deps, conn, event_id)
    await _announce(deps, event, "created")
    return event


class _NoLock:
    """A stand-in for the refresh lock when the caller already holds it."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *_: object) -> None:
        return None


@router.handles(utility.CREATE_EVENT)
async def create_event(body: DrEventCreate, deps: Deps) -> DrEvent:
    """An operator's event: not in the past; no participant in two overlapping events."""
    async with deps.pool.connection() as conn:
        return await create_event_as(deps, conn, body, trigger="operator")


@router.handles(utility.UPDATE_EVENT)
async def update_event(body: DrEventUpdate, deps: Deps) -> DrEvent:
    """Change the level or length of an event not yet ended; participants' responses are re-dispatched."""
    async with deps.live.lock, deps.pool.connection() as conn:
        async with conn.transaction():
            await repo.lock_events(conn)
            event = await repo.event(conn, body.event_id, lock=True)
            if event is None:
                msg = f"event_id: no DR event {body.event_id}"
                raise NotFoundError(msg, field="event_id")
            now = await sim_now(deps, conn)
            if event["status"] == "cancelled" or event["end"] <= now:
                msg = f"event_id: DR event {body.event_id} has {'been cancelled' if event['status'] == 'cancelled' else 'ended'}"
                raise ConflictError(msg, field="event_id")
            level = body.level or event["level"]
            end = event["start"] + timedelta(minutes=body.duration_min) if body.duration_min else event["end"]
            if end <= now:
                msg = f"duration_min: the event would have ended already ({end.isoformat()})"
                raise InvalidError(msg, field="duration_min")
            enrolled = await repo.enrolments(conn, event["program_id"])
            clash = await repo.overlapping(
                conn, [e["meter_id"] for e in enrolled], event["start"], end, event["id"]
            )
            if clash:
                msg = f"duration_min: meter {clash[0][0]} takes part in DR event {clash[0][1]} in that window"
                raise ConflictError(msg, field="duration_min")
            parts = await repo.participation(conn, [event["id"]])
            await programs.cancel_flex(deps.bus, parts)
            program = await _program_row(conn, event["program_id"])
            start = max(event["start"], now)
            taking_part = {p["meter_id"] for p in parts}
            redone = await programs.dispatch(
                deps.bus, deps.settings.sim.seed, event["id"], program=program,
                enrolled=[e for e in enrolled if e["meter_id"] in taking_part], start=start, end=end, level=level,
            )  # fmt: skip
            for meter_id, _complied, factor, flex_id in redone:
                await repo.update_participation(conn, event["id"], meter_id, flex_id=flex_id, factor=factor)
            await repo.set_event(conn, event["id"], level=level, end=end)
            await repo.log(conn, now, "event.update", body.model_dump(mode="json"))
        view = await _event_view(deps, conn, event["id"])
    await _announce(deps, view, "modified")
    return view


@router.handles(utility.CANCEL_EVENT)
async def cancel_event(body: DrEventRef, deps: Deps) -> DrEvent:
    """Cancel an event not yet ended: its participants' responses end now (idempotent once cancelled)."""
    async with deps.live.lock, deps.pool.connection() as conn:
        async with conn.transaction():
            event = await repo.event(conn, body.event_id, lock=True)
            if event is None:
                msg = f"event_id: no DR event {body.event_id}"
                raise NotFoundError(msg, field="event_id")
            now = await sim_now(deps, conn)
            if event["status"] != "cancelled":
                if event["end"] <= now:
                    msg = f"event_id: DR event {body.event_id} has ended; it can no longer be cancelled"
                    raise ConflictError(msg, field="event_id")
                await programs.cancel_flex(deps.bus, await repo.participation(conn, [event["id"]]))
                await repo.set_event(conn, event["id"], status="cancelled", cancelled_sim=now)
                await repo.log(conn, now, "event.cancel", {"event_id": event["id"]})
        view = await _event_view(deps, conn, event["id"])
    await _announce(deps, view, "cancelled")
    return view


@router.handles(utility.EVENTS)
async def list_events(query: DrEventQuery, deps: Deps) -> list[DrEvent]:
    """Events, newest first, with participants and measured shed."""
    async with deps.pool.connection() as conn:
        now = await sim_now(deps, conn)
        rows = await repo.events(conn, query.limit)
        parts = await repo.participation(conn, [r["id"] for r in rows])
    out = [
        programs.view(r, [p for p in parts if p["event_id"] == r["id"]], now, r["rebound_kwh"]) for r in rows
    ]
    if query.active is not None:
        out = [e for e in out if (e.status in ("scheduled", "active")) == query.active]
    return out


@router.handles(utility.EVENT)
async def get_event(query: DrEventRef, deps: Deps) -> DrEvent:
    """One event."""
    async with deps.pool.connection() as conn:
        return await _event_view(deps, conn, query.event_id)


@router.handles(utility.DR_LOG)
async def dr_log(_body: Any, deps: Deps) -> list[DrLogEntry]:
    """The latest 500 changes to programmes, enrolments and events, newest first."""
    async with deps.pool.connection() as conn:
        return [DrLogEntry(**r) for r in await repo.dr_log(conn, 500)]


# ---------------------------------------------------------------- dynamic bill
def _month_bounds(month: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """``[start, end)`` of a billing month ('YYYY-MM') in the zone ``tz``, as UTC instants."""
    year, mon = (int(x) for x in month.split("-"))
    start = datetime(year, mon, 1, tzinfo=tz).astimezone(UTC)
    end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=tz).astimezone(UTC)
    return start, end


def _next_month(month: str) -> str:
    year, mon = (int(x) for x in month.split("-"))
    return f"{year + mon // 12:04d}-{mon % 12 + 1:02d}"


@router.handles(utility.DYNAMIC_BILL)
async def dynamic_bill(query: DynamicBillQuery, deps: Deps) -> DynamicBill:
    """A meter's month on the dynamic tariff: Σ hourly kWh × the hour's price (its feeder's), minus DR
    credits, rounded once. The final one stored when the month closed (:func:`close_dynamic_months`), else
    provisional: computed on each read, never stored (no read writes)."""
    start, end = _month_bounds(query.month, ZoneInfo(deps.settings.billing.timezone))
    async with deps.pool.connection() as conn, conn.transaction():
        await conn.execute("set transaction read only")
        meter = await repo.resolve_meter(conn, query.meter_id)
        if meter is None:
            msg = f"meter_id: no meter with id or code {query.meter_id!r}"
            raise NotFoundError(msg, field="meter_id")
        stored = await repo.stored_bill(conn, meter[0], query.month)
        if stored is not None:
            return DynamicBill.model_validate(stored)
        now = await sim_now(deps, conn)
        if start > now:
            msg = f"month: {query.month} has not started on the simulation clock (now {now.isoformat()})"
            raise InvalidError(msg, field="month")
        return await _compute_bill(
            deps, conn, meter=meter, month=query.month, start=start, end=end, now=now, final=False
        )


async def _compute_bill(
    deps: Deps,
    conn: Conn,
    *,
    meter: tuple[int, str],
    month: str,
    start: datetime,
    end: datetime,
    now: datetime,
    final: bool,
    prices_by_node: dict[int, dict[datetime, float]] | None = None,
) -> DynamicBill:
    """One meter's dynamic bill for ``[start, end)`` (``prices_by_node`` caches each node's prices)."""
    hourly = await repo.meter_hourly(conn, [meter[0]], start, end)
    feeder = await repo.feeder_of(conn, meter[0])
    node = feeder or await _node(conn, None)
    cache = prices_by_node if prices_by_node is not None else {}
    if node.id not in cache:
        cache[node.id] = await _hourly_prices(deps, conn, node, start, end)
    prices = cache[node.id]
    credit, events = await repo.credits(conn, meter[0], start, end)
    params = price_params(deps.settings)
    kwh = sum(k for _, _, k in hourly)
    charge = sum(k * prices.get(t, params.base_rate) for _, t, k in hourly)
    return DynamicBill(
        meter_id=meter[0],
        meter_code=meter[1],
        month=month,
        status="final" if final else "provisional",
        currency=deps.settings.billing.currency,
        consumed_kWh=round(kwh, 3),
        energy_charge=round(charge, 2),
        flat_equivalent=round(kwh * params.base_rate, 2),
        dr_credits=round(credit, 2),
        dr_events=events,
        amount_due=round(charge - credit, 2),
        generated_at=now,
    )


async def close_dynamic_months(deps: Deps) -> list[str]:
    """Store the final dynamic bill of every meter linked to an ER for each month that has closed (the
    clock past its end and the aggregator's time rollups complete through it), once per month.

    Months go in order from the simulation's start month (or the month after the last closed). A bill
    already stored is kept, and a month is recorded only after all its bills, so a restart finishes a
    month left half done and every bill is stored exactly once. Called by the service's refresh loop.
    """
    tz = ZoneInfo(deps.settings.billing.timezone)
    closed: list[str] = []
    async with deps.pool.connection() as conn:
        rolled = await repo.rolled_until(conn)
        if rolled is None:
            return closed
        now = await sim_now(deps, conn)
        last = await repo.last_closed_month(conn)
        start_local = deps.settings.sim.start.astimezone(tz)
        month = _next_month(last) if last is not None else f"{start_local.year:04d}-{start_local.month:02d}"
        while True:
            start, end = _month_bounds(month, tz)
            if end > min(now, rolled):
                return closed
            done = await repo.stored_bill_meters(conn, month)
            prices: dict[int, dict[datetime, float]] = {}
            for meter in await repo.billable_meters(conn):
                if meter[0] in done:
                    continue
                body = await _compute_bill(
                    deps,
                    conn,
                    meter=meter,
                    month=month,
                    start=start,
                    end=end,
                    now=now,
                    final=True,
                    prices_by_node=prices,
                )
                async with conn.transaction():
                    await repo.store_bill(conn, meter[0], month, body.model_dump(mode="json"))
            async with conn.transaction():
                stored = await repo.complete_month(conn, month, now)
            _LOGGER.info("dynamic bills of %s closed: %d stored", month, stored)
            closed.append(month)
            month = _next_month(month)


async def _hourly_prices(
    deps: Deps, conn: Conn, node: Node, start: datetime, end: datetime
) -> dict[datetime, float]:
    """Each hour's dynamic price at a node, from the forecasts issued for it (as published)."""
    params = price_params(deps.settings)
    stored = await repo.forecasts(conn, [node.id], None, start, end)
    history = await forecaster.load_history(
        conn, [node], start, domain.TRAIN_DAYS, seed=deps.settings.sim.seed
    )
    reference = history.load[node.id]
    ref = float(np.nanmean(reference)) if np.isfinite(reference).any() else None
    forecast: dict[datetime, float] = {}
    for r in stored:
        if r["model"] == "regression" and (r["horizon"] == "hour-ahead" or r["target"] not in forecast):
            forecast[r["target"]] = r["load_kwh"]
    cpp = {}
    for e in await repo.events_between(conn, start, end):
        if e["cpp_rate"]:
            for t in domain.event_hours_of(e["start"], e["end"]):
                cpp[t] = float(e["cpp_rate"])
    out = {}
    t = start
    while t < end:
        _, p, _ = domain.price_at(
            params, domain.local_hour(t, history.climate.timezone), forecast.get(t), ref, cpp.get(t)
        )
        out[t] = p
        t += HOUR
    return out
