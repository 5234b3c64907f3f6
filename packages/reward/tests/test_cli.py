"""`grpo-reward check`: verdict JSON and exit status for one item; one verdict per line for a file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from reward_fixtures import PLUGINS_DIR

CLI = [sys.executable, "-m", "grpo_reward.cli"]


def test_check_prints_the_verdict_and_exits_by_correctness() -> None:
    right = subprocess.run([*CLI, "check", "--reference", "0.75", "--completion", r"so \boxed{3/4}"],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert right.returncode == 0, right.stderr
    assert json.loads(right.stdout)["correct"] is True
    wrong = subprocess.run([*CLI, "check", "--reference", "0.75", "--completion", r"so \boxed{0.7}"],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert wrong.returncode == 1
    assert json.loads(wrong.stdout)["reason"] == "different numbers"


def test_check_file_prints_one_verdict_per_line_and_a_summary(tmp_path: Path) -> None:
    items = [
        {"id": "p", "completion": r"\boxed{x^2+2x+1}", "reference": "(x+1)^2"},
        {"id": "q", "completion": r"\boxed{(1,2]}", "reference": "(1,2)"},
        {"id": "r", "completion": "no answer", "reference": "3"},
        {"id": "s", "completion": "The answer is (B)", "reference": "y", "task": "choice",
         "fields": {"choices": ["x", "y"]}},
    ]  # fmt: skip
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(json.dumps(item) for item in items) + "\n")
    run = subprocess.run([*CLI, "check", "--file", str(path), "--workers", "1"],
                         capture_output=True, text=True, timeout=180)  # fmt: skip
    assert run.returncode == 0, run.stderr
    verdicts = [json.loads(line) for line in run.stdout.splitlines()]
    expected = [("p", True), ("q", False), ("r", False), ("s", True)]  # s: task choice with its fields
    assert [(v["id"], v["correct"]) for v in verdicts] == expected
    summary = json.loads(run.stderr.strip().splitlines()[-1])["summary"]
    assert (summary["items"], summary["correct"]) == (4, 2)


def test_check_grades_any_task_with_fields_and_plugins_through_the_registry() -> None:
    env = {**os.environ, "PYTHONPATH": str(PLUGINS_DIR)}
    choice = subprocess.run([*CLI, "check", "--task", "choice", "--reference", "Paris", "--completion",
                             "The answer is (B)", "--fields", json.dumps({"choices": ["London", "Paris"]})],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert choice.returncode == 0, choice.stderr
    verdict = json.loads(choice.stdout)
    assert (verdict["correct"], verdict["reward"], verdict["extracted"]) == (True, 1.0, "B")
    assert verdict["components"] == {"correctness": 1.0, "format": 1.0}
    plugin = subprocess.run([*CLI, "check", "--task", "hostile_rewards:brevity", "--plugin",
                             "hostile_rewards:brevity", "--reference", "-", "--completion", "x" * 40],
                            capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert plugin.returncode == 1, plugin.stderr  # reward 0.6 < 1: not correct
    assert json.loads(plugin.stdout)["reward"] == pytest.approx(0.6)
    command = [*CLI, "check", "--task", "os:system", "--reference", "-", "--completion", "ls"]
    unloaded = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert unloaded.returncode == 2 and "unknown reward task 'os:system'" in unloaded.stderr


def test_serve_with_a_plugin_that_cannot_be_imported_exits_2_naming_it() -> None:
    run = subprocess.run([*CLI, "serve", "--port", "0", "--plugin", "no_such_rewards_module"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 2
    assert "plugin 'no_such_rewards_module' failed to import" in run.stderr


@pytest.mark.parametrize("command", ["check", "serve"])
def test_help_names_every_registered_task(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    from grpo_reward.cli import main
    from grpo_reward.tasks import TASKS

    with pytest.raises(SystemExit):
        main([command, "--help"])
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps the epilog
    assert f"registered tasks (--task): {', '.join(sorted(TASKS))} " in shown
