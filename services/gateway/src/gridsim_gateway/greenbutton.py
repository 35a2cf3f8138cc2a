"""Green Button "Download My Data" feeds (NAESB REQ.21 ESPI 3.3): pure functions from readings to XML.

A feed is an Atom ``feed`` whose entries hold ESPI resources: the meter's UsagePoint, its
LocalTimeParameters, one MeterReading + ReadingType + IntervalBlocks (one block per local day) for each
flow (import = delivered to the customer, flowDirection 1; export = received from the customer,
flowDirection 19), and a UsageSummary when the period is a billing month.

Units: ReadingType says Wh (uom 72) with powerOfTenMultiplier -3, so an IntervalReading's ``value`` is in
milliwatt-hours. Values are rounded on the running total (each interval is the difference of two rounded
cumulative sums), so the sum of a block's values is the period's energy rounded once, never the sum of
thousands of rounding errors: a month's feed equals the bill to within 0.5 mWh.
"""

from __future__ import annotations

import calendar
import itertools
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

__all__ = [
    "ATOM",
    "ESPI",
    "FLOW_DIRECTION",
    "MILLI_WH_PER_KWH",
    "BillSummary",
    "Feed",
    "Flow",
    "IntervalEnergy",
    "build_feed",
    "cumulative_round",
    "dst_rules",
]

ATOM = "http://www.w3.org/2005/Atom"
ESPI = "http://naesb.org/espi"
Flow = Literal["import", "export", "both"]
# ESPI FlowDirectionKind: 1 forward ("delivered", imported by the customer), 19 reverse ("received").
FLOW_DIRECTION = {"import": 1, "export": 19}
MILLI_WH_PER_KWH = 1_000_000
# ISO 4217 numeric codes of the currencies a tariff is likely to name (ESPI Currency is the number).
_CURRENCY = {"INR": 356, "USD": 840, "EUR": 978, "GBP": 826, "AUD": 36, "CAD": 124, "JPY": 392}
_DISABLED_RULE = "FFFFFFFF"  # ESPI: rule processing / DST correction disabled
_HUNDRED_THOUSANDTHS = 100_000  # ESPI money (Int48) is in 1/100,000 of the currency

ET.register_namespace("", ATOM)
ET.register_namespace("espi", ESPI)


@dataclass(frozen=True, slots=True)
class IntervalEnergy:
    """One interval's metered energy (kWh), as the rollup tables store it."""

    start: datetime
    consumption_kwh: float
    production_kwh: float


@dataclass(frozen=True, slots=True)
class BillSummary:
    """What a UsageSummary reports of a bill (all from ``GET /bill``)."""

    period_start: datetime
    period_end: datetime
    status: Literal["final", "provisional"]
    currency: str
    amount_due: float
    grid_bill: float
    grid_earning: float
    p2p_cost: float
    p2p_earning: float
    consumed_kwh: float
    produced_kwh: float
    generated_at: datetime


@dataclass(frozen=True, slots=True)
class Feed:
    """Everything one feed shows: the meter, the period, the flows, the intervals and maybe a bill."""

    meter_id: int
    meter_code: str
    base_url: str
    start: datetime
    end: datetime
    interval_s: int
    flow: Flow
    zone: ZoneInfo
    updated: datetime
    intervals: Sequence[IntervalEnergy]
    bill: BillSummary | None = None


def cumulative_round(values_kwh: Iterable[float], scale: int = MILLI_WH_PER_KWH) -> list[int]:
    """Integer values (``scale`` units per kWh) whose every partial sum is the true partial sum rounded."""
    out: list[int] = []
    total = 0.0
    previous = 0
    for value in values_kwh:
        total += value
        rounded = round(total * scale)
        out.append(rounded - previous)
        previous = rounded
    return out


# ---------------------------------------------------------------- local time
def _rule(local: datetime) -> str:
    """ESPI DstRuleType of a transition at local wall time ``local``: nth (or last) weekday of a month."""
    days_in_month = calendar.monthrange(local.year, local.month)[1]
    last = local.day + 7 > days_in_month
    operator = 7 if last else (local.day - 1) // 7 + 2  # 2..6: first..fifth occurrence; 7: last
    seconds = local.minute * 60 + local.second
    weekday = local.isoweekday()  # Monday = 1
    bits = seconds | local.hour << 12 | weekday << 17 | 0 << 20 | operator << 25 | local.month << 28
    return f"{bits:08X}"


def dst_rules(zone: ZoneInfo, year: int) -> tuple[str, str, int, int]:
    """(dstStartRule, dstEndRule, dstOffset s, tzOffset s) of ``zone`` in ``year``.

    The transitions are found hour by hour (then to the minute) in the zone's own rules (IANA tzdata),
    and encoded at the wall-clock time just before each change, as the standard's examples do.
    """
    t = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    offsets: list[tuple[datetime, timedelta]] = []
    while t < end:
        offsets.append((t, t.astimezone(zone).dst() or timedelta(0)))
        t += timedelta(hours=1)
    changes: list[datetime] = []
    for (t0, dst0), (_t1, dst1) in itertools.pairwise(offsets):
        if dst0 != dst1:
            minute = t0
            while (minute.astimezone(zone).dst() or timedelta(0)) == dst0:
                minute += timedelta(minutes=1)
            changes.append(minute)
    local = t.astimezone(zone)
    standard = int(((local.utcoffset() or timedelta(0)) - (local.dst() or timedelta(0))).total_seconds())
    if len(changes) != 2:
        return _DISABLED_RULE, _DISABLED_RULE, 0, standard
    on, off = sorted(changes, key=lambda c: (c.astimezone(zone).dst() or timedelta(0)) == timedelta(0))
    saving = on.astimezone(zone).dst() or timedelta(0)
    before_on = on + timedelta(seconds=standard)  # wall clock just before DST starts: standard time
    before_off = off + timedelta(seconds=standard) + saving  # ... before it ends: daylight time
    return _rule(before_on), _rule(before_off), int(saving.total_seconds()), standard


# ---------------------------------------------------------------- XML
def _espi(parent: ET.Element, name: str, text: object | None = None) -> ET.Element:
    element = ET.SubElement(parent, f"{{{ESPI}}}{name}")
    if text is not None:
        element.text = str(text)
    return element


def _atom(parent: ET.Element, name: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{ATOM}}}{name}", attrs)
    if text is not None:
        element.text = text
    return element


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _epoch(value: datetime) -> int:
    return int(value.timestamp())


def _interval(parent: ET.Element, name: str, start: datetime, seconds: int) -> None:
    element = _espi(parent, name)
    _espi(element, "duration", seconds)
    _espi(element, "start", _epoch(start))


class _Writer:
    """Builds the feed's entries with stable ids (uuid5 of the meter and the resource's href)."""

    def __init__(self, feed: Feed) -> None:
        self.feed = feed
        self.root = ET.Element(f"{{{ATOM}}}feed")
        self.base = f"{feed.base_url.rstrip('/')}/espi/1_1/resource"
        self.customer = f"{self.base}/RetailCustomer/{feed.meter_id}"
        self.point = f"{self.customer}/UsagePoint/{feed.meter_id}"

    def urn(self, href: str) -> str:
        return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, href)}"

    def entry(self, title: str, href: str, up: str, related: Sequence[str] = ()) -> ET.Element:
        """An Atom entry for the resource at ``href``; returns its ``content`` element."""
        entry = _atom(self.root, "entry")
        _atom(entry, "id", self.urn(href))
        _atom(entry, "link", rel="self", href=href, type="espi-entry/xml")
        _atom(entry, "link", rel="up", href=up, type="espi-feed/xml")
        for other in related:
            _atom(entry, "link", rel="related", href=other, type="espi-feed/xml")
        _atom(entry, "title", title)
        _atom(entry, "published", _stamp(self.feed.updated))
        _atom(entry, "updated", _stamp(self.feed.updated))
        return _atom(entry, "content")


def _flows(flow: Flow) -> list[Literal["import", "export"]]:
    return ["import", "export"] if flow == "both" else [flow]


def build_feed(feed: Feed) -> bytes:
    """The feed as UTF-8 XML bytes (with an XML declaration)."""
    w = _Writer(feed)
    _atom(w.root, "id", w.urn(f"{w.point}/feed/{_epoch(feed.start)}/{_epoch(feed.end)}/{feed.flow}"))
    _atom(w.root, "title", f"Green Button usage of meter {feed.meter_code}")
    _atom(w.root, "updated", _stamp(feed.updated))
    _atom(w.root, "link", rel="self", href=f"{w.customer}/UsagePoint", type="espi-feed/xml")

    ltp_href = f"{feed.base_url.rstrip('/')}/espi/1_1/resource/LocalTimeParameters/1"
    readings_href = f"{w.point}/MeterReading"
    summary_href = f"{w.point}/UsageSummary"
    related = [readings_href, ltp_href] + ([summary_href] if feed.bill else [])
    content = w.entry(f"Meter {feed.meter_code}", w.point, f"{w.customer}/UsagePoint", related)
    usage_point = _espi(content, "UsagePoint")
    category = _espi(usage_point, "ServiceCategory")
    _espi(category, "kind", 0)  # electricity

    start_rule, end_rule, saving, standard = dst_rules(feed.zone, feed.start.astimezone(feed.zone).year)
    content = w.entry(f"Local time ({feed.zone.key})", ltp_href, ltp_href.rsplit("/", 1)[0])
    ltp = _espi(content, "LocalTimeParameters")
    _espi(ltp, "dstEndRule", end_rule)
    _espi(ltp, "dstOffset", saving)
    _espi(ltp, "dstStartRule", start_rule)
    _espi(ltp, "tzOffset", standard)

    for n, flow in enumerate(_flows(feed.flow), start=1):
        _meter_reading(w, feed, flow, n, readings_href)
    if feed.bill is not None:
        _usage_summary(w, feed.bill, summary_href)
    ET.indent(w.root)
    body: bytes = ET.tostring(w.root, encoding="utf-8", xml_declaration=True)
    return body


def _meter_reading(
    w: _Writer, feed: Feed, flow: Literal["import", "export"], n: int, readings_href: str
) -> None:
    reading_href = f"{readings_href}/{n}"
    type_href = f"{feed.base_url.rstrip('/')}/espi/1_1/resource/ReadingType/{n}{flow[0]}{feed.interval_s}"
    blocks_href = f"{reading_href}/IntervalBlock"
    title = "Energy delivered (import)" if flow == "import" else "Energy received (export)"
    content = w.entry(title, reading_href, readings_href, [type_href, blocks_href])
    _espi(content, "MeterReading")

    content = w.entry(f"{title}, Wh per {feed.interval_s} s", type_href, type_href.rsplit("/", 1)[0])
    reading_type = _espi(content, "ReadingType")
    _espi(reading_type, "accumulationBehaviour", 4)  # deltaData: energy within each interval
    _espi(reading_type, "commodity", 1)  # electricity, secondary metered
    _espi(reading_type, "currency", _CURRENCY.get(feed.bill.currency, 0) if feed.bill else 0)
    _espi(reading_type, "dataQualifier", 12)  # normal
    _espi(reading_type, "defaultQuality", 0)  # valid
    _espi(reading_type, "flowDirection", FLOW_DIRECTION[flow])
    _espi(reading_type, "intervalLength", feed.interval_s)
    _espi(reading_type, "kind", 12)  # energy
    _espi(reading_type, "phase", 0)
    _espi(reading_type, "powerOfTenMultiplier", -3)  # values in mWh
    _espi(reading_type, "timeAttribute", 0)
    _espi(reading_type, "uom", 72)  # Wh

    values = cumulative_round(
        [i.consumption_kwh if flow == "import" else i.production_kwh for i in feed.intervals]
    )
    days: dict[str, list[tuple[IntervalEnergy, int]]] = {}
    for interval, value in zip(feed.intervals, values, strict=True):
        days.setdefault(interval.start.astimezone(feed.zone).date().isoformat(), []).append((interval, value))
    for day, items in days.items():
        block_href = f"{blocks_href}/{day.replace('-', '')}"
        content = w.entry(f"{title} on {day}", block_href, blocks_href)
        block = _espi(content, "IntervalBlock")
        first = items[0][0].start
        last_end = items[-1][0].start + timedelta(seconds=feed.interval_s)
        _interval(block, "interval", first, int((last_end - first).total_seconds()))
        for interval, value in items:
            reading = _espi(block, "IntervalReading")
            _interval(reading, "timePeriod", interval.start, feed.interval_s)
            _espi(reading, "value", value)


def _money(amount: float) -> int:
    return round(amount * _HUNDRED_THOUSANDTHS)


def _usage_summary(w: _Writer, bill: BillSummary, href: str) -> None:
    content = w.entry(f"Bill {bill.period_start.date().isoformat()} ({bill.status})", f"{href}/1", href)
    summary = _espi(content, "UsageSummary")
    duration = int((bill.period_end - bill.period_start).total_seconds())
    _interval(summary, "billingPeriod", bill.period_start, duration)
    _espi(summary, "billLastPeriod", _money(bill.amount_due))
    items = [
        (bill.grid_bill, 3, "energy drawn from the grid"),
        (-bill.grid_earning, 6, "credit for energy exported to the grid"),
        (bill.p2p_cost, 3, "energy bought peer to peer"),
        (-bill.p2p_earning, 6, "energy sold peer to peer"),
    ]
    for amount, kind, note in items:
        if amount == 0:
            continue
        item = _espi(summary, "costAdditionalDetailLastPeriod")
        _espi(item, "amount", _money(amount))
        _espi(item, "note", note)
        _espi(item, "itemKind", kind)
    _espi(summary, "currency", _CURRENCY.get(bill.currency, 0))
    overall = _espi(summary, "overallConsumptionLastPeriod")
    _espi(overall, "powerOfTenMultiplier", -3)
    _espi(overall, "timeStamp", _epoch(bill.period_end))
    _espi(overall, "uom", 72)
    _espi(overall, "value", round(bill.consumed_kwh * MILLI_WH_PER_KWH))
    _espi(summary, "qualityOfReading", 19 if bill.status == "final" else 14)  # billing-grade / not validated
    _espi(summary, "statusTimeStamp", _epoch(bill.generated_at))
    _espi(summary, "commodity", 1)
