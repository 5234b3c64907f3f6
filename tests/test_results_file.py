"""benchmarks/results_file.py: `--record` writes what the benchmark printed, and a re-run replaces
only its own section of RESULTS.md."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import results_file  # benchmarks/ holds scripts, not a package


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "RESULTS.md"
    monkeypatch.setattr(results_file, "RESULTS_PATH", path)
    return path


def test_a_report_records_exactly_the_lines_printed_inside_it(
    results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    print("before the report")
    with results_file.Report("Speed") as report:
        print("figure: 12.5 items/s")
        print("figure: 3 pairs")
    print("after the report")
    report.save(["benchmarks/speed.py", "--pairs", "3", "--record"])
    text = results.read_text()
    assert capsys.readouterr().out.count("figure:") == 2  # still printed to the terminal
    section = text.split("## Speed\n", 1)[1]
    assert "`uv run python benchmarks/speed.py --pairs 3 --record`" in section
    assert "```\nfigure: 12.5 items/s\nfigure: 3 pairs\n```" in section
    assert "before the report" not in text and "after the report" not in text
    assert "commit " in section and "load average" in section  # the provenance line


def test_a_rerun_replaces_its_own_section_and_keeps_the_others(results: Path) -> None:
    results_file.record("A", "first A")
    results_file.record("B", "only B")
    results_file.record("A", "second A")
    text = results.read_text()
    assert text.count("## A\n") == 1 and "second A" in text and "first A" not in text
    assert "only B" in text and text.index("## A") < text.index("## B")
