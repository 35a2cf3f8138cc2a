"""The commands the meter-sim service answers: each one's request and reply, the one definition both ends use."""

from __future__ import annotations

from gridsim_shared.channels import Command, NoArgs
from gridsim_shared.schemas import bookings, controls, health, meters, simulation, worldengine

SERVICE = "meter-sim"

# handlers

APPLIANCES: Command[NoArgs, list[meters.Appliance]] = Command(
    SERVICE, "appliances", NoArgs, list[meters.Appliance], "The appliance catalogue."
)
CREATE_ER: Command[meters.ErCreate, meters.Er] = Command(
    SERVICE, "create_er", meters.ErCreate, meters.Er, "Create an energy resource with its appliances."
)
UPDATE_ER: Command[meters.ErUpdate, meters.Er] = Command(
    SERVICE,
    "update_er",
    meters.ErUpdate,
    meters.Er,
    "Change an energy resource; a sent appliance list replaces the old one.",
)
GET_ER: Command[meters.ErRef, meters.Er] = Command(
    SERVICE, "get_er", meters.ErRef, meters.Er, "One energy resource."
)
LIST_ERS: Command[meters.ErListRequest, list[meters.Er]] = Command(
    SERVICE, "list_ers", meters.ErListRequest, list[meters.Er], "Energy resources, a page at a time."
)
DELETE_ER: Command[meters.ErRef, meters.Deleted] = Command(
    SERVICE, "delete_er", meters.ErRef, meters.Deleted, "Delete an energy resource (its meter is unlinked)."
)
CREATE_METER: Command[meters.MeterCreate, meters.Meter] = Command(
    SERVICE,
    "create_meter",
    meters.MeterCreate,
    meters.Meter,
    "Create a meter under a transformer (given, its parent's, nearest, or unassigned).",
)
UPDATE_METER: Command[meters.MeterUpdate, meters.Meter] = Command(
    SERVICE,
    "update_meter",
    meters.MeterUpdate,
    meters.Meter,
    "Change a meter (code, parent, transformer, load factors, type, location).",
)
GET_METER: Command[meters.MeterRefRequest, meters.Meter] = Command(
    SERVICE, "get_meter", meters.MeterRefRequest, meters.Meter, "One meter, by id or code."
)
LIST_METERS: Command[meters.MeterListRequest, list[meters.Meter]] = Command(
    SERVICE,
    "list_meters",
    meters.MeterListRequest,
    list[meters.Meter],
    "Meters, a page at a time, optionally filtered.",
)
DELETE_METER: Command[meters.MeterRefRequest, meters.Deleted] = Command(
    SERVICE,
    "delete_meter",
    meters.MeterRefRequest,
    meters.Deleted,
    "Delete a meter that has no child meters.",
)
LINK: Command[meters.LinkRequest, meters.Meter] = Command(
    SERVICE,
    "link",
    meters.LinkRequest,
    meters.Meter,
    "Link a meter to an energy resource; generation starts with the next interval.",
)
UNLINK: Command[meters.UnlinkRequest, meters.Meter] = Command(
    SERVICE,
    "unlink",
    meters.UnlinkRequest,
    meters.Meter,
    "Unlink a meter from its energy resource; generation stops with the next interval.",
)
CREATE_GRID_NODE: Command[meters.GridNodeCreate, meters.GridNode] = Command(
    SERVICE,
    "create_grid_node",
    meters.GridNodeCreate,
    meters.GridNode,
    "Create a utility, feeder or transformer.",
)
UPDATE_GRID_NODE: Command[meters.GridNodeUpdate, meters.GridNode] = Command(
    SERVICE,
    "update_grid_node",
    meters.GridNodeUpdate,
    meters.GridNode,
    "Change a grid node (name, rating, location, parent).",
)
GET_GRID_NODE: Command[meters.NodeRefRequest, meters.GridNode] = Command(
    SERVICE, "get_grid_node", meters.NodeRefRequest, meters.GridNode, "One grid node, by id or code."
)
DELETE_GRID_NODE: Command[meters.NodeRefRequest, meters.Deleted] = Command(
    SERVICE,
    "delete_grid_node",
    meters.NodeRefRequest,
    meters.Deleted,
    "Delete a grid node with nothing below it.",
)
GRID_TREE: Command[meters.GridTreeRequest, meters.GridTree] = Command(
    SERVICE,
    "grid_tree",
    meters.GridTreeRequest,
    meters.GridTree,
    "The grid as a tree, utilities down to child meters.",
)
CLOCK: Command[NoArgs, simulation.SimulationTime] = Command(
    SERVICE, "clock", NoArgs, simulation.SimulationTime, "The simulation clock."
)
PAUSE: Command[NoArgs, simulation.SimulationTime] = Command(
    SERVICE, "pause", NoArgs, simulation.SimulationTime, "Pause the clock (idempotent)."
)
RESUME: Command[NoArgs, simulation.SimulationTime] = Command(
    SERVICE,
    "resume",
    NoArgs,
    simulation.SimulationTime,
    "Run the clock on the wall-clock schedule (idempotent).",
)
SET_SPEED: Command[simulation.SpeedRequest, simulation.SimulationTime] = Command(
    SERVICE,
    "set_speed",
    simulation.SpeedRequest,
    simulation.SimulationTime,
    "Simulated seconds per real second.",
)
JUMP: Command[simulation.JumpRequest, simulation.SimulationTime] = Command(
    SERVICE,
    "jump",
    simulation.JumpRequest,
    simulation.SimulationTime,
    "Move the clock to a time (no readings for the intervals jumped over).",
)
STEP: Command[simulation.StepRequest, simulation.StepResult] = Command(
    SERVICE,
    "step",
    simulation.StepRequest,
    simulation.StepResult,
    "Simulate and publish N intervals as fast as possible; answer once published (and stored).",
)

# worldengine_commands

CREATE_DER: Command[worldengine.DerCreate, worldengine.DerOut] = Command(
    SERVICE,
    "create_der",
    worldengine.DerCreate,
    worldengine.DerOut,
    "Add one appliance instance (a DER) to an ER; connected at once, switched off unless asked.",
)
SWITCH_DER: Command[worldengine.DerSwitch, worldengine.DerOut] = Command(
    SERVICE,
    "switch_der",
    worldengine.DerSwitch,
    worldengine.DerOut,
    "Switch one DER on or off (or flip it); with ``er_id`` it must belong to that ER.",
)
SWITCH_DERS: Command[worldengine.DersSwitch, worldengine.DersSwitched] = Command(
    SERVICE,
    "switch_ders",
    worldengine.DersSwitch,
    worldengine.DersSwitched,
    "Switch many DERs on or off at once; ids that name no DER are skipped (a bulk update).",
)
SET_LOAD_FACTORS: Command[worldengine.LoadFactorsSet, worldengine.LoadFactorsSetResult] = Command(
    SERVICE,
    "set_load_factors",
    worldengine.LoadFactorsSet,
    worldengine.LoadFactorsSetResult,
    "Set K_consumption and/or K_production of many meters, all or none (404 naming a missing meter).",
)
SET_SUBSCRIPTION: Command[worldengine.SubscriptionSet, dict[str, int]] = Command(
    SERVICE,
    "set_subscription",
    worldengine.SubscriptionSet,
    dict[str, int],
    "Record a meter's demand-flexibility subscription order id (it changes no reading).",
)
RELINK: Command[meters.LinkRequest, meters.Meter] = Command(
    SERVICE,
    "relink",
    meters.LinkRequest,
    meters.Meter,
    "Link a meter to an ER, releasing either side's previous link, in one transaction.",
)
CREATE_METER_LINKED: Command[worldengine.MeterCreateLinked, meters.Meter] = Command(
    SERVICE,
    "create_meter_linked",
    worldengine.MeterCreateLinked,
    meters.Meter,
    "Create a meter and link it to an ER (releasing the ER's previous meter), in one transaction.",
)
CREATE_ER_LINKED: Command[worldengine.ErCreateLinked, meters.Er] = Command(
    SERVICE,
    "create_er_linked",
    worldengine.ErCreateLinked,
    meters.Er,
    "Create an energy resource and link it to a meter (releasing the meter's previous ER), in one transaction.",
)
UPDATE_METER_LINKED: Command[worldengine.MeterUpdateLinked, meters.Meter] = Command(
    SERVICE,
    "update_meter_linked",
    worldengine.MeterUpdateLinked,
    meters.Meter,
    "Change a meter, its link (or unlink it) and its DFP subscription, in one transaction.",
)
UPDATE_ER_LINKED: Command[worldengine.ErUpdateLinked, meters.Er] = Command(
    SERVICE,
    "update_er_linked",
    worldengine.ErUpdateLinked,
    meters.Er,
    "Change an energy resource and its link to a meter (or unlink it), in one transaction.",
)
RESET_WORLD: Command[worldengine.ResetWorld, worldengine.ResetResult] = Command(
    SERVICE,
    "reset_world",
    worldengine.ResetWorld,
    worldengine.ResetResult,
    "Delete the grid, meters, ERs, DERs and readings, and load the demo world (or the configured world",
)

# booking_commands (feasibility's writes on meter-sim's world, each one meter-sim transaction)

BOOK_CONNECTION: Command[bookings.BookConnection, bookings.ConnectionBooked] = Command(
    SERVICE,
    "book_connection",
    bookings.BookConnection,
    bookings.ConnectionBooked,
    "Book a connection's load on a transformer if it still fits, with its household, all or nothing.",
)
CREATE_TRANSFORMER: Command[bookings.TransformerCreateBooked, meters.GridNode] = Command(
    SERVICE,
    "create_transformer",
    bookings.TransformerCreateBooked,
    meters.GridNode,
    "Create a transformer with its already-connected loads, in one transaction.",
)

# control_commands

CONTROL: Command[controls.ControlRequest, controls.ControlResult] = Command(
    SERVICE,
    "control",
    controls.ControlRequest,
    controls.ControlResult,
    "Set K on every meter matching all the given filters (meter, parent's descendants, appliance, pincode).",
)
CONTROL_LOG: Command[controls.ControlLogRequest, list[controls.ControlLogEntry]] = Command(
    SERVICE,
    "control_log",
    controls.ControlLogRequest,
    list[controls.ControlLogEntry],
    "Every control change with its simulated time, oldest first (filter by meter, action, time).",
)
CREATE_SPIKE: Command[controls.SpikeCreate, controls.Spike] = Command(
    SERVICE,
    "create_spike",
    controls.SpikeCreate,
    controls.Spike,
    "Add a load or source spike, or a generator (a solar farm) at a transformer or feeder.",
)
LIST_SPIKES: Command[controls.SpikeListRequest, list[controls.Spike]] = Command(
    SERVICE,
    "list_spikes",
    controls.SpikeListRequest,
    list[controls.Spike],
    "Spikes, newest first; ``active``: only those not ended at the current simulated time.",
)
GET_SPIKE: Command[controls.SpikeRefRequest, controls.Spike] = Command(
    SERVICE, "get_spike", controls.SpikeRefRequest, controls.Spike, "One spike with the meters it covers."
)
DELETE_SPIKE: Command[controls.SpikeRefRequest, controls.Spike] = Command(
    SERVICE,
    "delete_spike",
    controls.SpikeRefRequest,
    controls.Spike,
    "End a spike now (a generator is decommissioned: its meter goes offline); idempotent.",
)
CREATE_FLEX: Command[controls.FlexCreate, controls.FlexEvent] = Command(
    SERVICE,
    "create_flex",
    controls.FlexCreate,
    controls.FlexEvent,
    "Curtail the flexible loads of meters over a window (thermostat setback, water and EV deferral).",
)
GET_FLEX: Command[controls.FlexRefRequest, controls.FlexEvent] = Command(
    SERVICE, "get_flex", controls.FlexRefRequest, controls.FlexEvent, "One flexible-load window."
)
CANCEL_FLEX: Command[controls.FlexRefRequest, controls.FlexEvent] = Command(
    SERVICE,
    "cancel_flex",
    controls.FlexRefRequest,
    controls.FlexEvent,
    "End a flexible-load window now (the loads rebound from now); idempotent.",
)
ADD_DER: Command[controls.DerAdd, controls.DerInfo] = Command(
    SERVICE,
    "add_der",
    controls.DerAdd,
    controls.DerInfo,
    "Add an appliance instance or solar panel to an ER (by catalogue id or name), at a lifecycle stage.",
)
UPDATE_DER: Command[controls.DerPatch, controls.DerInfo] = Command(
    SERVICE,
    "update_der",
    controls.DerPatch,
    controls.DerInfo,
    "Switch a DER, advance its lifecycle (purchased → installed → connected), or change its size.",
)
DELETE_DER: Command[controls.DerRefRequest, controls.DerDeleted] = Command(
    SERVICE,
    "delete_der",
    controls.DerRefRequest,
    controls.DerDeleted,
    "Remove a DER from its ER; the waveform changes from the next interval.",
)
GET_DER: Command[controls.DerRefRequest, controls.DerInfo] = Command(
    SERVICE, "get_der", controls.DerRefRequest, controls.DerInfo, "One DER."
)
LIST_DERS: Command[controls.DerListRequest, list[controls.DerInfo]] = Command(
    SERVICE, "list_ders", controls.DerListRequest, list[controls.DerInfo], "The DERs of an ER."
)
METER_EVENT: Command[controls.MeterEventRequest, controls.MeterEventResult] = Command(
    SERVICE,
    "meter_event",
    controls.MeterEventRequest,
    controls.MeterEventResult,
    "Inject a tamper, fault or outage on a meter (or clear it); published on its meter-event topics.",
)
EVENTS: Command[controls.EventListRequest, list[controls.EventOut]] = Command(
    SERVICE,
    "events",
    controls.EventListRequest,
    list[controls.EventOut],
    "Stored grid and meter events, newest first (filter by type, subject, simulated time).",
)

# outage_commands

CREATE_OUTAGE: Command[health.OutageCreate, health.Outage] = Command(
    SERVICE,
    "create_outage",
    health.OutageCreate,
    health.Outage,
    "Take a transformer, feeder section or feeder off supply (a fault, or a planned outage).",
)
RESTORE_OUTAGE: Command[health.OutageRefRequest, health.Outage] = Command(
    SERVICE,
    "restore_outage",
    health.OutageRefRequest,
    health.Outage,
    "Restore supply now (an operator's command); 409 when the outage is not in effect.",
)
GET_OUTAGE: Command[health.OutageRefRequest, health.Outage] = Command(
    SERVICE, "get_outage", health.OutageRefRequest, health.Outage, "One outage."
)
LIST_OUTAGES: Command[health.OutageListRequest, list[health.Outage]] = Command(
    SERVICE, "list_outages", health.OutageListRequest, list[health.Outage], "Outages, newest first."
)
DISCONNECT: Command[health.DisconnectRequest, health.SupplyResult] = Command(
    SERVICE,
    "disconnect",
    health.DisconnectRequest,
    health.SupplyResult,
    "Open a meter's service switch remotely: its readings show no voltage and no energy.",
)
RECONNECT: Command[health.DisconnectRequest, health.SupplyResult] = Command(
    SERVICE,
    "reconnect",
    health.DisconnectRequest,
    health.SupplyResult,
    "Close a meter's service switch again.",
)
READ_METER: Command[health.MeterReadRequest, health.MeterRead] = Command(
    SERVICE,
    "read_meter",
    health.MeterReadRequest,
    health.MeterRead,
    "The meter's registers and last interval at simulated now, from the engine's memory (no I/O but the lookup).",
)
SWITCH_TRANSFORMER: Command[health.FeederSwitch, health.FeederSwitchResult] = Command(
    SERVICE,
    "switch_transformer",
    health.FeederSwitch,
    health.FeederSwitchResult,
    "Move a transformer to another feeder of its utility; rollups follow from the next interval.",
)
RELIABILITY: Command[health.ReliabilityRequest, list[health.ReliabilityIndices]] = Command(
    SERVICE,
    "reliability",
    health.ReliabilityRequest,
    list[health.ReliabilityIndices],
    "SAIFI, SAIDI, CAIDI and MAIFI per feeder for a month, from the outage records.",
)
