"""Lint and formatting are part of the test run: `ruff check` and `ruff format --check` from the root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff_is_clean(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    fix = "uv run ruff format . && uv run ruff check --fix ."
    report = f"{result.stdout}{result.stderr}"
    assert result.returncode == 0, f"ruff {' '.join(command)} found problems (fix: {fix}):\n{report}"
