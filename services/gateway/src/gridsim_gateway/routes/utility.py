"""The utility's programmes: load forecasts and their scores, dynamic prices, demand response, dynamic bills.

Thin: each route validates with the shared schema and asks the utility service over MQTT.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from gridsim_gateway.deps import BusDep
from gridsim_shared.commands import utility
from gridsim_shared.schemas.utility import (
    DrEvent,
    DrEventChange,
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
    ForecastView,
    PriceQuery,
    PriceSignal,
    Program,
    ProgramCreate,
    ScoreQuery,
    ScoreRow,
)

router = APIRouter(tags=["utility"])

EventId = Annotated[int, Path(ge=1, le=2**63 - 1)]
ProgramId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.get("/forecast")
async def get_forecast(query: Annotated[ForecastQuery, Query()], bus: BusDep) -> ForecastView:
    """A grid node's load and net-load forecasts (seasonal-naive and regression) beside what was metered.

    `day-ahead`: each hour forecast 24 h before it; `hour-ahead`: 1 h before. Forecasts are issued every
    simulated hour once the aggregator has rolled it up; `latest` holds the hours not yet metered.
    """
    return await bus.call(utility.FORECAST, query)


@router.get("/forecast/scores")
async def get_scores(query: Annotated[ScoreQuery, Query()], bus: BusDep) -> list[ScoreRow]:
    """MAPE, WAPE and bias of each model per node, quantity and horizon over the rolling window
    (`GRIDSIM_UTILITY__SCORE_WINDOW_DAYS`, default 7 days), scored against the metered hours."""
    return await bus.call(utility.FORECAST_SCORES, query)


@router.get("/price")
async def get_price(query: Annotated[PriceQuery, Query()], bus: BusDep) -> PriceSignal:
    """The current dynamic price of the utility or a feeder and its next 24 hours: the time-of-use rate,
    the real-time price (moved by the forecast load) or a critical-peak event's price. Also published
    retained on `price/{level}/{node}`."""
    return await bus.call(utility.PRICE, query)


@router.post("/dr/programs", status_code=status.HTTP_201_CREATED)
async def create_program(body: ProgramCreate, bus: BusDep) -> Program:
    """Create a demand-response programme: `ptr` (peak-time rebate), `dlc` (direct load control) or `cpp`
    (critical-peak pricing). 409 when the name is taken."""
    return await bus.call(utility.CREATE_PROGRAM, body)


@router.get("/dr/programs")
async def list_programs(bus: BusDep) -> list[Program]:
    """Every programme with its number of participants."""
    return await bus.call(utility.PROGRAMS)


@router.post("/dr/enrolments", status_code=status.HTTP_201_CREATED)
async def enrol(body: EnrolmentCreate, bus: BusDep) -> Enrolment:
    """Enrol a meter in a programme. 422 when its ER has no flexible load (EV charger, water heater, AC,
    heater, pump), 404 for an unknown programme or meter, 409 when already enrolled."""
    return await bus.call(utility.ENROL, body)


@router.get("/dr/programs/{program_id}/enrolments")
async def list_enrolments(program_id: ProgramId, bus: BusDep) -> list[Enrolment]:
    """A programme's participants and their flexible kW."""
    return await bus.call(utility.ENROLMENTS, EnrolmentQuery(program_id=program_id))


@router.post("/dr/events", status_code=status.HTTP_201_CREATED)
async def create_event(body: DrEventCreate, bus: BusDep) -> DrEvent:
    """Issue a DR event to a programme's participants (also sent to OpenADR VENs).

    422 when `start` is in the past of the simulation clock or the programme has no participants; 409
    when a participant already takes part in an overlapping event. Each participant responds or not (a
    seeded draw) and rebounds after the event; its measured shed against its CAISO 10-in-10 baseline and
    its credit appear once the event and as many hours after it are metered.
    """
    return await bus.call(utility.CREATE_EVENT, body)


@router.get("/dr/events")
async def list_events(query: Annotated[DrEventQuery, Query()], bus: BusDep) -> list[DrEvent]:
    """Events, newest first (`active=true`: scheduled or running)."""
    return await bus.call(utility.EVENTS, query)


@router.get("/dr/events/{event_id}")
async def get_event(event_id: EventId, bus: BusDep) -> DrEvent:
    """One event with each participant's response, baseline, metered kWh and credit."""
    return await bus.call(utility.EVENT, DrEventRef(event_id=event_id))


@router.patch("/dr/events/{event_id}")
async def update_event(event_id: EventId, body: DrEventChange, bus: BusDep) -> DrEvent:
    """Change an event not yet ended: its `level` (1–3) or `duration_min` (from its start). Participants'
    responses are re-dispatched; VENs get the event again under a new revision."""
    update = DrEventUpdate(event_id=event_id, **body.model_dump())
    return await bus.call(utility.UPDATE_EVENT, update)


@router.delete("/dr/events/{event_id}")
async def cancel_event(event_id: EventId, bus: BusDep) -> DrEvent:
    """Cancel an event not yet ended; participants' responses end now. Cancelling twice is a no-op."""
    return await bus.call(utility.CANCEL_EVENT, DrEventRef(event_id=event_id))


@router.get("/dr/log")
async def dr_log(bus: BusDep) -> list[DrLogEntry]:
    """The latest 500 changes to programmes, enrolments and events (and OpenADR registrations and
    responses), newest first, with their simulated time."""
    return await bus.call(utility.DR_LOG)


@router.get("/bill/dynamic")
async def dynamic_bill(query: Annotated[DynamicBillQuery, Query()], bus: BusDep) -> DynamicBill:
    """A meter's month on the dynamic tariff: Σ hourly kWh × the hour's price at its feeder, minus its DR
    credits, rounded once. Final (stored once, unchanged afterwards) when the month has ended and is
    rolled up, as `GET /bill` is; provisional before."""
    return await bus.call(utility.DYNAMIC_BILL, query)
