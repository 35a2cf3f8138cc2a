"""Data-out building blocks without servers: ESPI rounding and DST rules, a synthetic feed against the
official schema, and the documented column tables."""

from __future__ import annotations

import functools
import random
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import xmlschema

from gridsim import testing
from gridsim_gateway import greenbutton, tabular

DOC = Path(__file__).resolve().parents[3] / "docs" / "data-out.md"


@functools.cache  # building the ESPI schema takes seconds; every test validates against the same one
def _schema() -> xmlschema.XMLSchema:
    for parent in Path(__file__).resolve().parents:
        folder = parent / "shared" / "standards" / "green-button"
        if (folder / "espi-usage-3.3.xsd").is_file():
            return xmlschema.XMLSchema([str(folder / "atom.xsd"), str(folder / "espi-usage-3.3.xsd")])
    reason = "the ESPI schema (shared/standards/green-button) is not beside the repository"
    if testing.integration_required():
        pytest.fail(reason)
    pytest.skip(reason)


def test_cumulative_rounding_keeps_every_partial_sum() -> None:
    rng = random.Random(7)
    values = [rng.random() * 0.01 for _ in range(5000)]
    rounded = greenbutton.cumulative_round(values)
    running = 0.0
    partial = 0
    for value, unit in zip(values, rounded, strict=True):
        running += value
        partial += unit
        assert abs(partial - running * greenbutton.MILLI_WH_PER_KWH) <= 0.5 + 1e-6
    assert sum(rounded) == round(sum(values) * greenbutton.MILLI_WH_PER_KWH)


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("America/Los_Angeles", ("360E2000", "B40E2000", 3600, -28800)),  # the ESPI standard's example
        ("Europe/Berlin", ("3E0E2000", "AE0E3000", 3600, 3600)),  # last Sundays of March and October
        ("Asia/Kolkata", ("FFFFFFFF", "FFFFFFFF", 0, 19800)),
        ("UTC", ("FFFFFFFF", "FFFFFFFF", 0, 0)),
    ],
)
def test_dst_rules(zone: str, expected: tuple[str, str, int, int]) -> None:
    assert greenbutton.dst_rules(ZoneInfo(zone), 2025) == expected


def _feed(flow: greenbutton.Flow, bill: bool) -> bytes:
    start = datetime(2025, 6, 1, 7, tzinfo=UTC)
    rng = random.Random(1)
    intervals = [
        greenbutton.IntervalEnergy(
            start + timedelta(hours=h), rng.random(), rng.random() if h % 24 < 12 else 0.0
        )
        for h in range(30 * 24)
    ]
    summary = greenbutton.BillSummary(
        period_start=start,
        period_end=start + timedelta(days=30),
        status="final",
        currency="INR",
        amount_due=-12.5,
        grid_bill=100.0,
        grid_earning=112.5,
        p2p_cost=0.0,
        p2p_earning=0.0,
        consumed_kwh=sum(i.consumption_kwh for i in intervals),
        produced_kwh=sum(i.production_kwh for i in intervals),
        generated_at=start + timedelta(days=30),
    )
    return greenbutton.build_feed(
        greenbutton.Feed(
            meter_id=7,
            meter_code="MTR-7",
            base_url="http://gridsim.test/",
            start=start,
            end=start + timedelta(days=30),
            interval_s=3600,
            flow=flow,
            zone=ZoneInfo("America/Los_Angeles"),
            updated=start + timedelta(days=30),
            intervals=intervals,
            bill=summary if bill else None,
        )
    )


@pytest.mark.parametrize(("flow", "bill"), [("import", True), ("export", False), ("both", True)])
def test_a_synthetic_feed_validates(flow: greenbutton.Flow, bill: bool) -> None:
    body = _feed(flow, bill)
    _schema().validate(body)
    root = ET.fromstring(body)
    ns = {"e": greenbutton.ESPI, "a": greenbutton.ATOM}
    blocks = root.findall("a:entry/a:content/e:IntervalBlock", ns)
    assert len(blocks) == (30 if flow != "both" else 60)  # one block per Pacific day (00:00 PDT = 07:00Z)
    assert (root.find("a:entry/a:content/e:UsageSummary", ns) is not None) == bill


def test_documented_columns_are_the_exported_ones() -> None:
    text = DOC.read_text()
    assert tabular.column_table(tabular.READING_COLUMNS) in text
    assert tabular.column_table(tabular.ROLLUP_COLUMNS) in text
