"""The one home of every measured figure: `benchmarks/RESULTS.md`, written by the benchmarks themselves.

A benchmark run with `--record` calls `record(section, body)`: the section `## <section>` of RESULTS.md is
replaced (or appended) with the body under a provenance line (date, commit, machine, load), so no figure is
ever typed by hand and a re-run replaces the figures it measured, never others. READMEs link to a section
instead of quoting its numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import TextIO

RESULTS_PATH = Path(__file__).resolve().parent / "RESULTS.md"
DEFAULT_RUN_PICTURE = RESULTS_PATH.parent.parent / "docs" / "default-run.png"  # written by default_run.py
BENCH_GROUP = "uv run --group bench python"  # how scripts that need TRL or Math-Verify are started

_PREAMBLE = (
    "# Measured results\n\n"
    "Every figure the project quotes lives here, written by the benchmark that measured it "
    "(`uv run python benchmarks/<script>.py ... --record`), never typed by hand. Each section says when, "
    "on which commit and machine, and under what load it was measured; a re-run replaces its own section.\n"
)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (boxes differ: figures from two boxes are not comparable)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def git_commit() -> str:
    """The commit measured, with `+dirty` when the working tree differs from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        # what the benchmarks write themselves (this file's results, the default run's picture) is not
        # a change to the code measured
        written = [":!benchmarks/RESULTS.md", ":!docs/default-run.png"]
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *written],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"
    return commit + ("+dirty" if dirty else "")


def provenance(load_during: tuple[float, float, float] | None = None) -> str:
    """One line saying when, where and under what load a figure was measured."""
    load = load_during if load_during is not None else os.getloadavg()
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"*{when}, commit {git_commit()}, {cpu_model()}, {os.cpu_count()} logical cores, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, python {platform.python_version()}*"
    )


def record(section: str, body: str, *, load_during: tuple[float, float, float] | None = None) -> Path:
    """Replace (or append) `## <section>` of RESULTS.md with `body` under its provenance line."""
    text = RESULTS_PATH.read_text() if RESULTS_PATH.exists() else _PREAMBLE
    block = f"## {section}\n\n{provenance(load_during)}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(section)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    if pattern.search(text):
        text = pattern.sub(lambda _: block + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    RESULTS_PATH.write_text(text.rstrip("\n") + "\n")
    return RESULTS_PATH


class _Tee(io.TextIOBase):
    """Writes to the terminal and keeps a copy."""

    def __init__(self, terminal: TextIO) -> None:
        self.terminal, self.copy = terminal, io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.terminal.write(text)

    def flush(self) -> None:
        self.terminal.flush()


class Report:
    """What a benchmark prints inside `with Report(section) as report:`, kept so that `--record` writes
    exactly the printed figures (its `save`), never a number typed apart from the run.

    Only this process's `print`s are kept; a child process's output goes to the terminal alone.
    """

    def __init__(self, section: str, runner: str = "uv run python") -> None:
        self.section = section
        self.runner = runner  # how the script is started (`uv run --group bench python` for TRL, Math-Verify)
        self.load_before = os.getloadavg()
        self._tee = _Tee(sys.stdout)
        self._redirect = contextlib.redirect_stdout(self._tee)

    def __enter__(self) -> Report:
        self._redirect.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._redirect.__exit__(*exc)  # type: ignore[arg-type]

    def body(self, argv: list[str]) -> str:
        """The command line, the load average at its start, and what it printed, as markdown."""
        command = " ".join([self.runner, f"benchmarks/{Path(argv[0]).name}", *argv[1:]])
        before = " ".join(f"{x:.2f}" for x in self.load_before)
        printed = self._tee.copy.getvalue().strip("\n")
        started = f"load average {before} at its start (the line above: at its end)"
        return f"`{command}`: {started}\n\n```\n{printed}\n```\n"

    def save(self, argv: list[str]) -> Path:
        """Write this run's section of RESULTS.md (`argv`: the command line, `--record` included)."""
        return record(self.section, self.body(argv))


def add_record_flag(parser: argparse.ArgumentParser, section: str) -> None:
    """`--record`: write the printed figures into RESULTS.md under `## <section>`."""
    parser.add_argument(
        "--record",
        action="store_true",
        help=f"also write the figures into benchmarks/RESULTS.md, section '{section}' (replacing it)",
    )
