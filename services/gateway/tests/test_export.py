"""Data out against the real pipeline: a consumer and a prosumer simulated over June 2025 (hourly
intervals), then their Green Button feeds validated against the official ESPI 3.3 schema with totals equal
to the bill and to ``GET /meter/stream``, and CSV / Parquet exports read back equal to the JSON API.

The schema is not part of the project: it is read from ``shared/standards/green-button`` beside the
repository (its README says to use it from there), found by walking up from this file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
import xmlschema

from gridsim import testing
from gridsim_aggregator.__main__ import serve as serve_aggregator
from gridsim_billing.__main__ import serve as serve_billing
from gridsim_gateway.greenbutton import ESPI
from gridsim_gateway.main import create_app
from gridsim_meter_sim.__main__ import serve as serve_meter_sim
from gridsim_shared.settings import Settings
from gridsim_shared.testing import gateway_client, running

pytestmark = pytest.mark.integration

START = datetime(2025, 6, 1, tzinfo=UTC)
INTERVAL_S = 3600  # hourly readings keep a month of stepping short
MONTH_INTERVALS = 30 * 24
SF = {"city": "San Francisco", "latitude": 37.77, "longitude": -122.42}


def _schema_dir() -> Path | None:
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "standards" / "green-button"
        if (candidate / "espi-usage-3.3.xsd").is_file():
            return candidate
    return None


@pytest.fixture(scope="module")
def espi_schema() -> xmlschema.XMLSchema:
    folder = _schema_dir()
    if folder is None:
        reason = "the ESPI schema (shared/standards/green-button) is not beside the repository"
        if testing.integration_required():
            pytest.fail(reason)
        pytest.skip(reason)
    return xmlschema.XMLSchema([str(folder / "atom.xsd"), str(folder / "espi-usage-3.3.xsd")])


async def _post(client: httpx.AsyncClient, path: str, body: dict[str, Any], status: int = 201) -> Any:
    response = await client.post(path, json=body)
    assert response.status_code == status, response.text
    return response.json()


async def _home(client: httpx.AsyncClient, code: str, kind: str, appliances: list[str]) -> int:
    er = await _post(client, "/admin/er", {"name": code, "type": kind, "appliance_type": appliances, **SF})
    meter = await _post(client, "/admin/meter", {"meter_id": code, **SF})
    await _post(client, "/admin/meter/link", {"meter_id": meter["id"], "er_id": er["id"]}, status=200)
    return int(meter["id"])


@contextlib.asynccontextmanager
async def _june(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """June 2025 in Los Angeles simulated for a consumer and a prosumer; the system left running."""
    settings = settings.model_copy(
        update={
            "sim": settings.sim.model_copy(update={"start": START, "interval_s": INTERVAL_S}),
            "billing": settings.billing.model_copy(update={"timezone": "America/Los_Angeles"}),
        }
    )
    async with (
        running(serve_meter_sim, serve_aggregator, serve_billing, settings=settings),
        gateway_client(create_app(settings)) as client,
    ):
        await _home(client, "GB-C", "consumer", ["Refrigerator", "Television", "Air Conditioner"])
        await _home(client, "GB-P", "prosumer", ["Refrigerator", "Solar Panel", "Solar Panel"])
        # June in Los Angeles ends at 07:00 UTC on 1 July: step to 08:00 UTC so June's bills are final.
        result = await _post(client, "/simulation/step", {"intervals": MONTH_INTERVALS + 8}, status=200)
        assert result["stored"] is True, result
        yield client


@pytest.mark.timeout(300)
async def test_data_out_over_a_simulated_month(settings: Settings, espi_schema: xmlschema.XMLSchema) -> None:
    async with _june(settings) as client:
        await _green_button_feeds_validate_and_equal_the_bill(client, espi_schema)
        await _green_button_refuses_bad_periods(client)
        await _csv_and_parquet_round_trip_to_the_json_api(client)


def _total_mwh(feed: bytes, flow_direction: int) -> tuple[int, int]:
    """(Σ IntervalReading values, intervalLength) of the MeterReading with this flowDirection."""
    root = ET.fromstring(feed)
    ns = {"a": "http://www.w3.org/2005/Atom", "e": ESPI}
    types = {
        e.find("a:link[@rel='self']", ns).get("href"): e.find("a:content/e:ReadingType", ns)  # type: ignore[union-attr]
        for e in root.findall("a:entry", ns)
        if e.find("a:content/e:ReadingType", ns) is not None
    }
    wanted = [
        href
        for href, rt in types.items()
        if rt.findtext("e:flowDirection", namespaces=ns) == str(flow_direction)
    ]
    assert len(wanted) == 1
    rt = types[wanted[0]]
    assert rt.findtext("e:uom", namespaces=ns) == "72"
    assert rt.findtext("e:powerOfTenMultiplier", namespaces=ns) == "-3"
    # IntervalBlocks of that reading: the entries whose "up" link is the reading's IntervalBlock feed.
    readings = [
        e
        for e in root.findall("a:entry", ns)
        if e.find("a:content/e:MeterReading", ns) is not None
        and any(link.get("href") == wanted[0] for link in e.findall("a:link[@rel='related']", ns))
    ]
    blocks_href = next(
        link.get("href")
        for link in readings[0].findall("a:link[@rel='related']", ns)
        if str(link.get("href")).endswith("/IntervalBlock")
    )
    total = 0
    for entry in root.findall("a:entry", ns):
        up = entry.find("a:link[@rel='up']", ns)
        if up is not None and up.get("href") == blocks_href:
            total += sum(
                int(v.text or 0)
                for v in entry.iterfind("a:content/e:IntervalBlock/e:IntervalReading/e:value", ns)
            )
    return total, int(rt.findtext("e:intervalLength", namespaces=ns) or 0)


async def _green_button_feeds_validate_and_equal_the_bill(
    client: httpx.AsyncClient, espi_schema: xmlschema.XMLSchema
) -> None:
    if True:
        for code, kind in (("GB-C", "consumer"), ("GB-P", "prosumer")):
            bill = (await client.get("/bill", params={"meter_id": code, "month": "2025-06"})).json()
            assert bill["status"] == "final", bill
            stream = (
                await client.get(
                    "/meter/stream",
                    params={
                        "meter_id": code,
                        "resolution": "1h",
                        "from": bill["period_start"],
                        "to": "2025-07-01T06:59:00Z",
                        "limit": 10_000,
                    },
                )
            ).json()
            flows = ("import", "export", "both") if kind == "prosumer" else ("import", "both")
            for flow in flows:
                response = await client.get(
                    "/export/greenbutton",
                    params={"meter_id": code, "month": "2025-06", "flow": flow, "interval": "1h"},
                )
                assert response.status_code == 200, response.text
                assert response.headers["content-type"].startswith("application/atom+xml")
                espi_schema.validate(response.content)
                if flow in {"import", "both"}:
                    total, length = _total_mwh(response.content, 1)
                    assert length == 3600
                    assert abs(total / 1e6 - bill["total_consumed_kWh"]) <= 0.001
                    assert abs(total / 1e6 - sum(p["consumption_kWh"] for p in stream)) <= 0.0005
                if flow in {"export", "both"}:
                    total, _ = _total_mwh(response.content, 19)
                    assert abs(total / 1e6 - bill["total_produced_kWh"]) <= 0.001
                    assert abs(total / 1e6 - sum(p["production_kWh"] or 0 for p in stream)) <= 0.0005
                    assert (total > 0) == (kind == "prosumer")
                assert b"UsageSummary" in response.content
        # A period without a bill: daily intervals over a week.
        response = await client.get(
            "/export/greenbutton",
            params={
                "meter_id": "GB-P",
                "from": "2025-06-08T00:00:00Z",
                "to": "2025-06-15T00:00:00Z",
                "interval": "1d",
            },
        )
        assert response.status_code == 200, response.text
        espi_schema.validate(response.content)
        assert b"UsageSummary" not in response.content
        assert _total_mwh(response.content, 19)[1] == 86400


async def _green_button_refuses_bad_periods(client: httpx.AsyncClient) -> None:
    if True:
        cases = [
            ({"meter_id": "GB-C"}, "month"),
            ({"meter_id": "GB-C", "from": "2025-06-02T00:00:00Z", "to": "2025-06-01T00:00:00Z"}, "to"),
            ({"meter_id": "GB-C", "from": "2025-06-01T00:30:00Z", "to": "2025-06-02T00:00:00Z"}, "interval"),
            ({"meter_id": "GB-C", "month": "2025-13"}, "month"),
            ({"meter_id": "GB-C", "from": "0001-01-01T00:00:00Z", "to": "0001-01-02T00:00:00Z"}, "from"),
            ({"meter_id": "NOPE", "month": "2025-06"}, "meter_id"),
        ]
        for params, field in cases:
            response = await client.get("/export/greenbutton", params=params)
            assert 400 <= response.status_code < 500, (params, response.text)
            assert response.json()["error"]["field"] == field, response.text


def _csv_rows(content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode())))


def _same(json_value: Any, text: str) -> bool:
    if json_value is None:
        return text == ""
    if isinstance(json_value, bool):
        return text == ("t" if json_value else "f")
    if isinstance(json_value, float):
        return float(text) == pytest.approx(json_value, rel=1e-12, abs=1e-12)
    return str(json_value) == text


async def _csv_and_parquet_round_trip_to_the_json_api(client: httpx.AsyncClient) -> None:
    window = {"from": "2025-06-10T00:00:00Z", "to": "2025-06-11T00:00:00Z"}
    if True:
        for resolution in ("raw", "1h"):
            json_points = (
                await client.get(
                    "/meter/stream",
                    params={
                        **window,
                        "meter_id": "GB-P",
                        "resolution": resolution,
                        "to": "2025-06-10T23:59:59Z",
                    },
                )
            ).json()
            assert json_points
            as_csv = await client.get(
                "/export/readings", params={**window, "meter_id": "GB-P", "resolution": resolution}
            )
            assert as_csv.status_code == 200, as_csv.text
            assert as_csv.headers["content-type"].startswith("text/csv")
            rows = _csv_rows(as_csv.content)
            assert len(rows) == len(json_points)
            as_parquet = await client.get(
                "/export/readings",
                params={**window, "meter_id": "GB-P", "resolution": resolution},
                headers={"accept": "application/vnd.apache.parquet"},
            )
            assert as_parquet.status_code == 200, as_parquet.text
            table = pq.read_table(io.BytesIO(as_parquet.content))
            assert table.schema.field("consumption_kWh").metadata[b"unit"] == b"kWh"
            records = table.to_pylist()
            assert len(records) == len(json_points)
            for point, row, record in zip(json_points, rows, records, strict=True):
                for field, value in point.items():
                    if field == "timestamp":
                        stamp = value.replace("Z", "+00:00")
                        assert datetime.fromisoformat(row[field]) == datetime.fromisoformat(stamp)
                        assert record[field] == datetime.fromisoformat(stamp)
                        continue
                    assert _same(value, row[field]), (resolution, field, value, row[field])
                    if isinstance(value, float):
                        assert record[field] == pytest.approx(value, rel=1e-12, abs=1e-12)
                    else:
                        assert record[field] == value, (resolution, field)
        # The whole grid and a node's subtree; rollups of the subtree.
        grid = _csv_rows(
            (await client.get("/export/readings", params={**window, "resolution": "1h"})).content
        )
        assert {r["meter_code"] for r in grid} == {"GB-C", "GB-P"}
        assert len(grid) == 48
        tree = (await client.get("/grid")).json()
        utility = tree["utilities"][0]["code"] if "utilities" in tree else None
        if utility is not None:
            sub = _csv_rows(
                (
                    await client.get(
                        "/export/readings", params={**window, "resolution": "1h", "node": utility}
                    )
                ).content
            )
            assert len(sub) == 48
            rollups = await client.get(
                "/export/rollups", params={**window, "node": utility, "resolution": "1h", "format": "parquet"}
            )
            assert rollups.status_code == 200, rollups.text
            table = pq.read_table(io.BytesIO(rollups.content))
            assert table.num_rows >= 24
        bad = await client.get("/export/readings", params={"meter_id": "GB-P", "node": "x"})
        assert bad.status_code == 422
        assert bad.json()["error"]["field"] == "node"
        missing = await client.get("/export/rollups", params={"node": "no-such-node"})
        assert missing.status_code == 404
        assert missing.json()["error"]["field"] == "node"
