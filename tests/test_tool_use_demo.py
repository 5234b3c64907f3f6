"""The tool-use demo, shortened: `grpo train --config examples/tool-use.toml` through real services.

A short warm-up, 2 GRPO steps on few prompts, 20 held-out problems: the run must complete, its
episodes must have called the calculator, and summary.json and the end table must carry accuracy and
tool-call statistics before and after, plus the accuracy of the same model without the tool.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from grpo_learner.local.service_processes import find_executable
from grpo_learner.monitoring.metrics import read_metrics

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tool-use.toml"


def test_tool_use_run_calls_the_calculator_and_reports_before_and_after(tmp_path: Path) -> None:
    run_dir = tmp_path / "tool-use"
    result = subprocess.run(
        [find_executable("grpo"), "train", "--config", str(EXAMPLE), "--warmup-steps", "60",
         "--max-steps", "2", "--run-dir", str(run_dir), "--no-progress",
         "--set", "tensorboard=false", "--set", "train.torch_threads=1",
         "--set", "rollout.prompts_per_step=4", "--set", "eval.max_problems=20",
         "--set", "eval.samples=2", "--set", "eval.k=[2]"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_metrics(run_dir)
    assert [r["step"] for r in records] == [0, 1, 2]
    trained = records[1:]
    assert sum(r["episode/tool_calls"] for r in trained) > 0, "no episode called the calculator"
    assert all(r["episode/turns"] >= 1 for r in trained)

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"] == "tool-use" and summary["steps"] == 2
    for side in ("heldout_before", "heldout_after"):
        figures = summary[side]
        assert {"greedy_accuracy", "pass@1", "episode/tool_calls", "episode/tool_errors"} <= set(figures)
        assert 0 <= figures["greedy_accuracy_without_environment"] <= 1
    assert summary["heldout_problems"] == 20
    assert "tool calls per episode" in result.stdout and "without the tool" in result.stdout
