"""examples/custom-environment installs as a package and the rollout's registry finds it by name."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

PLAY = """
from grpo_rollout.environments import ENVIRONMENTS, EpisodeStart, ModelTurn
environment = ENVIRONMENTS.get_item("guess-number", import_references=False)({})
state = environment.reset(EpisodeStart("p", "guess", (1,), "42", {}, 0))
for guess in (10, 50, 42):
    result = environment.step(state, ModelTurn((1,), f"<guess>{guess}</guess>", 0, "</guess>"))
    print(result.observation, result.done, result.reward)
"""


def test_the_example_environment_installs_and_is_found_by_name(
    tmp_path: Path, install_example: Callable[[str, Path], Path]
) -> None:
    target = install_example("custom-environment", tmp_path / "plugins")
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run([sys.executable, "-c", PLAY], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "<hint>higher</hint> False 0.0",
        "<hint>lower</hint> False 0.0",
        "<hint>correct</hint> True 1.0",
    ]
    without = subprocess.run([sys.executable, "-c", PLAY], capture_output=True, text=True, timeout=60)
    assert "unknown environment 'guess-number'" in without.stderr  # found only once installed
