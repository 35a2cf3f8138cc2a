"""A million-row export in CSV and Parquet streams with bounded memory.

The gateway runs under uvicorn in this process (a real server streams; the in-process transport would
buffer the body), the client writes the body to a file chunk by chunk, and the process's peak RSS growth is
compared with a ceiling measured in the same run: what holding the export whole would cost — the CSV body's
size (bound: half of it), and the Parquet file's uncompressed (Arrow) size from its own metadata (bound: all
of it; the writer holds one 16,384-row batch as Python rows plus its row group). Slow (about 3 minutes on a
loaded 2-core machine); ``bench/bench_export.py`` records the same figures.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from gridsim.testing import PeakRss, fill_meter_data, served
from gridsim_gateway.main import create_app
from gridsim_shared.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

METERS = 1000
INTERVALS = 1000  # 1,000 meters × 1,000 minutes = a million readings


def _download(url: str, params: dict[str, str], dest: Path) -> int:
    size = 0
    with (
        httpx.stream("GET", f"{url}/export/readings", params=params, timeout=600) as response,
        dest.open("wb") as out,
    ):
        assert response.status_code == 200, response.read()
        for chunk in response.iter_bytes():
            out.write(chunk)
            size += len(chunk)
    return size


@pytest.mark.timeout(600)
def test_a_million_row_export_stays_within_a_memory_bound(settings: Settings, tmp_path: Path) -> None:
    assert fill_meter_data(settings.db.url, settings.db.schema_name, METERS, INTERVALS) == METERS * INTERVALS
    with served(create_app(settings)) as url:
        for fmt in ("csv", "parquet"):  # warm up: imports, pools, the first row group
            _download(url, {"format": fmt, "to": "2025-06-20T00:01:00Z"}, tmp_path / f"warm.{fmt}")

        with PeakRss() as csv_rss:
            csv_size = _download(url, {"format": "csv"}, tmp_path / "all.csv")
        with (tmp_path / "all.csv").open("rb") as f:
            assert sum(1 for _ in f) == METERS * INTERVALS + 1  # and the header
        assert csv_rss.growth < csv_size / 2, (csv_rss.growth, csv_size)

        with PeakRss() as parquet_rss:
            _download(url, {"format": "parquet"}, tmp_path / "all.parquet")
        meta = pq.ParquetFile(tmp_path / "all.parquet").metadata
        assert meta.num_rows == METERS * INTERVALS
        arrow_size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        assert parquet_rss.growth < arrow_size, (parquet_rss.growth, arrow_size)
    print(
        f"CSV {csv_size / 2**20:.1f} MiB, RSS growth {csv_rss.growth / 2**20:.1f} MiB; Parquet uncompressed "
        f"{arrow_size / 2**20:.1f} MiB, RSS growth {parquet_rss.growth / 2**20:.1f} MiB"
    )
