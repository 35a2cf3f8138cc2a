"""Export benchmark: a million readings as CSV and Parquet through the gateway, time and memory.

Fills a fresh schema with 1,000 meters × 1,000 one-minute readings, serves the gateway with uvicorn in this
process, downloads ``GET /export/readings`` in both formats to files, and records rows per second and the
process's peak RSS growth against the ceiling measured in the same run (the CSV body's size; the Parquet
file's uncompressed Arrow size). Run: ``uv run python bench/bench_export.py`` (broker and database from
GRIDSIM_BENCH_MQTT_URL / GRIDSIM_BENCH_DATABASE_URL, default the local test servers). Writes
bench/results/export.json and .md.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx
import pyarrow.parquet as pq

from gridsim.testing import (
    LOCAL_DATABASE_URL,
    LOCAL_MQTT_URL,
    PeakRss,
    fill_meter_data,
    fresh_settings,
    served,
)
from gridsim_gateway.main import create_app

RESULTS = Path(__file__).parent / "results"
METERS = int(os.environ.get("GRIDSIM_BENCH_EXPORT_METERS", "1000"))
INTERVALS = int(os.environ.get("GRIDSIM_BENCH_EXPORT_INTERVALS", "1000"))
MIB = 2**20


def _download(url: str, fmt: str, dest: Path, **params: str) -> int:
    size = 0
    query = {"format": fmt, **params}
    with (
        httpx.stream("GET", f"{url}/export/readings", params=query, timeout=900) as response,
        dest.open("wb") as out,
    ):
        response.raise_for_status()
        for chunk in response.iter_bytes():
            out.write(chunk)
            size += len(chunk)
    return size


def run() -> dict[str, Any]:
    mqtt = os.environ.get("GRIDSIM_BENCH_MQTT_URL", LOCAL_MQTT_URL)
    database = os.environ.get("GRIDSIM_BENCH_DATABASE_URL", LOCAL_DATABASE_URL)
    rows = METERS * INTERVALS
    results: dict[str, Any] = {"rows": rows}
    with fresh_settings(mqtt, database) as settings, TemporaryDirectory() as tmp:
        start = time.perf_counter()
        fill_meter_data(settings.db.url, settings.db.schema_name, METERS, INTERVALS)
        results["fill_s"] = round(time.perf_counter() - start, 1)
        with served(create_app(settings)) as url:
            for fmt in ("csv", "parquet"):
                _download(url, fmt, Path(tmp) / f"warm.{fmt}", to="2025-06-20T00:01:00Z")
            for fmt in ("csv", "parquet"):
                dest = Path(tmp) / f"all.{fmt}"
                start = time.perf_counter()
                with PeakRss() as rss:
                    size = _download(url, fmt, dest)
                elapsed = time.perf_counter() - start
                if fmt == "csv":
                    ceiling = size
                else:
                    meta = pq.ParquetFile(dest).metadata
                    ceiling = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
                results[fmt] = {
                    "seconds": round(elapsed, 1),
                    "rows_per_s": round(rows / elapsed),
                    "bytes": size,
                    "rss_growth_mib": round(rss.growth / MIB, 1),
                    "ceiling_mib": round(ceiling / MIB, 1),
                    "growth_over_ceiling": round(rss.growth / ceiling, 3),
                }
    return results


def main() -> None:
    load_before = os.getloadavg()
    results = run()
    report = {
        "benchmark": "export",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "export.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Export benchmark",
        "",
        f"{results['rows']:,} readings (1-minute, {METERS} meters); machine {report['machine']}; load average "
        f"{report['load_average_before'][0]} before, {report['load_average_after'][0]} after. Fill {results['fill_s']} s.",
        "",
        "| format | seconds | rows/s | size (MiB) | peak RSS growth (MiB) | ceiling (MiB) | growth / ceiling |",
        "|---|---|---|---|---|---|---|",
    ]
    for fmt in ("csv", "parquet"):
        r = results[fmt]
        lines.append(
            f"| {fmt} | {r['seconds']} | {r['rows_per_s']:,} | {r['bytes'] / MIB:.1f} | {r['rss_growth_mib']} |"
            f" {r['ceiling_mib']} | {r['growth_over_ceiling']} |"
        )
    lines += [
        "",
        "Ceiling: what holding the export whole would cost, measured in the same run — the CSV body's size, and "
        "the Parquet file's uncompressed (Arrow) size from its metadata.",
    ]
    (RESULTS / "export.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
