"""Plot one simulated day of a transformer: load (kVA peak per 15 minutes) against its rating.

    uv run gridsim up                                   # in another terminal
    uv run python examples/plot_transformer_day.py tx-101 2025-06-20

Writes ``<transformer>-<day>.png`` when matplotlib is installed (``uv pip install matplotlib``), and
prints a text chart either way. Uses only gridsim.client (the Parquet export, as a polars frame).
"""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime, time, timedelta

from gridsim.client import Client

BARS = " ▁▂▃▄▅▆▇█"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("transformer", help="a transformer's code, e.g. tx-101 (see GET /grid)")
    parser.add_argument("day", type=date.fromisoformat, help="simulated day, YYYY-MM-DD (UTC)")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    args = parser.parse_args()

    start = datetime.combine(args.day, time(), tzinfo=UTC)
    with Client(args.url) as gridsim:
        frame = gridsim.rollups_frame(args.transformer, start, start + timedelta(days=1), resolution="15m")
    mine = frame.filter(frame["node_code"] == args.transformer.lower()).sort("timestamp")
    if mine.is_empty():
        msg = f"no rollups for {args.transformer} on {args.day} (has the clock reached it?)"
        raise SystemExit(msg)
    peaks = mine["peak_kVA"].to_list()
    rating = mine["capacity_kVA"][0]
    top = max(*peaks, rating or 0) or 1.0
    print(f"{args.transformer} on {args.day}: peak {max(peaks):.1f} kVA of {rating} kVA")
    print("".join(BARS[round(p / top * (len(BARS) - 1))] for p in peaks))
    print(
        f"energy {mine['consumption_kWh'].sum():.1f} kWh drawn, {mine['production_kWh'].sum():.1f} kWh exported"
    )
    try:
        import matplotlib.pyplot as plt  # type: ignore[import-not-found]
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(mine["timestamp"].to_list(), peaks, label="peak kVA (15 min)")
    if rating:
        ax.axhline(rating, color="red", linestyle="--", label=f"rating {rating} kVA")
    ax.set_title(f"{args.transformer}, {args.day} (UTC)")
    ax.set_ylabel("kVA")
    ax.legend()
    out = f"{args.transformer}-{args.day}.png"
    fig.savefig(out, dpi=100, bbox_inches="tight")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
