"""The commands the utility service answers: each one's request and reply, the one definition both ends use."""

from __future__ import annotations

from gridsim_shared import messages
from gridsim_shared.channels import Command, NoArgs
from gridsim_shared.schemas import utility

SERVICE = "utility"

# handlers

FORECAST: Command[utility.ForecastQuery, utility.ForecastView] = Command(
    SERVICE,
    "forecast",
    utility.ForecastQuery,
    utility.ForecastView,
    "A node's forecasts for one horizon (both models) beside the metered hours.",
)
FORECAST_SCORES: Command[utility.ScoreQuery, list[utility.ScoreRow]] = Command(
    SERVICE,
    "forecast_scores",
    utility.ScoreQuery,
    list[utility.ScoreRow],
    "MAPE, WAPE and bias per node, quantity, horizon and model over the rolling window.",
)
PRICE: Command[utility.PriceQuery, messages.PriceSignal] = Command(
    SERVICE,
    "price",
    utility.PriceQuery,
    messages.PriceSignal,
    "The current dynamic price of the utility or a feeder and its next 24 hours.",
)
CREATE_PROGRAM: Command[utility.ProgramCreate, utility.Program] = Command(
    SERVICE,
    "create_program",
    utility.ProgramCreate,
    utility.Program,
    "A new programme (409 when the name is taken).",
)
PROGRAMS: Command[NoArgs, list[utility.Program]] = Command(
    SERVICE, "programs", NoArgs, list[utility.Program], "Every programme."
)
ENROL: Command[utility.EnrolmentCreate, utility.Enrolment] = Command(
    SERVICE,
    "enrol",
    utility.EnrolmentCreate,
    utility.Enrolment,
    "Enrol a meter with flexible load in a programme.",
)
ENROLMENTS: Command[utility.EnrolmentQuery, list[utility.Enrolment]] = Command(
    SERVICE, "enrolments", utility.EnrolmentQuery, list[utility.Enrolment], "A programme's participants."
)
CREATE_EVENT: Command[utility.DrEventCreate, utility.DrEvent] = Command(
    SERVICE,
    "create_event",
    utility.DrEventCreate,
    utility.DrEvent,
    "An operator's event: not in the past; no participant in two overlapping events.",
)
UPDATE_EVENT: Command[utility.DrEventUpdate, utility.DrEvent] = Command(
    SERVICE,
    "update_event",
    utility.DrEventUpdate,
    utility.DrEvent,
    "Change the level or length of an event not yet ended; participants' responses are re-dispatched.",
)
CANCEL_EVENT: Command[utility.DrEventRef, utility.DrEvent] = Command(
    SERVICE,
    "cancel_event",
    utility.DrEventRef,
    utility.DrEvent,
    "Cancel an event not yet ended: its participants' responses end now (idempotent once cancelled).",
)
EVENTS: Command[utility.DrEventQuery, list[utility.DrEvent]] = Command(
    SERVICE,
    "events",
    utility.DrEventQuery,
    list[utility.DrEvent],
    "Events, newest first, with participants and measured shed.",
)
EVENT: Command[utility.DrEventRef, utility.DrEvent] = Command(
    SERVICE, "event", utility.DrEventRef, utility.DrEvent, "One event."
)
DR_LOG: Command[NoArgs, list[utility.DrLogEntry]] = Command(
    SERVICE,
    "dr_log",
    NoArgs,
    list[utility.DrLogEntry],
    "The latest 500 changes to programmes, enrolments and events, newest first.",
)
DYNAMIC_BILL: Command[utility.DynamicBillQuery, utility.DynamicBill] = Command(
    SERVICE,
    "dynamic_bill",
    utility.DynamicBillQuery,
    utility.DynamicBill,
    "A meter's month on the dynamic tariff: Σ hourly kWh × the hour's price (its feeder's), minus DR",
)
