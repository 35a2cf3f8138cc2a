"""`gridsim realism` end to end: the demo world's summer and winter weeks, every figure in range, the
report and its plots written. Slow (two simulated weeks, minute by minute): deselected by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridsim.cli import main


@pytest.mark.slow
def test_the_realism_report_of_the_demo_world_is_in_range(tmp_path: Path) -> None:
    assert main(["realism", "--out", str(tmp_path)]) == 0  # exit 1 would mean a figure out of range
    report = (tmp_path / "realism.md").read_text()
    assert "| **no** |" not in report
    assert "homes, weekday hourly peak/min (summer" in report
    assert (tmp_path / "homes_weekday.png").stat().st_size > 0


def test_a_bad_world_file_is_refused_with_its_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "world.json"
    bad.write_text('{"version": 1, "name": "x", "grid": [], "meters": [], "extra": 1}')
    assert main(["realism", "--world", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "world.json" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing half-written
