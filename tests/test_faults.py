"""Faults in a running training, every part a real process: nothing lost, nothing trained twice.

- kill -9 of the rollout service mid-run, restarted on the same port: the learner re-sends the
  prompts whose groups never came back, brings the new process to its current weights, and ends
  with every step trained once on exactly its prompts;
- kill -9 of the learner, restarted with --resume: it continues from its last checkpoint.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpo_learner.metrics import read_metrics

sys.path.insert(0, str(Path(__file__).parent))  # e2e_support lives beside this file
from e2e_support import (
    PROMPTS_PER_STEP,
    Processes,
    Service,
    build_assets,
    finish,
    free_port,
    learner_argv,
    raw_metrics,
    reward_argv,
    rollout_argv,
    rollout_info,
    tail,
    trainer_state,
    wait_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_assets(tmp_path_factory.mktemp("assets"))


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    try:
        yield started
    finally:
        started.close()


@pytest.fixture(scope="module")
def reward(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One reward service for the module: it is stateless, any learner or rollout may share it."""
    started = Processes()
    try:
        yield started.launch_service("reward", reward_argv(), tmp_path_factory.mktemp("reward")).ready()
    finally:
        started.close()


def test_rollout_killed_and_restarted_loses_no_prompt(
    tmp_path: Path, assets: tuple[Path, Path], reward: Service, processes: Processes
) -> None:
    model, data = assets
    port = free_port()
    services = tmp_path / "services"
    rollout = processes.launch_service("rollout", rollout_argv(model, reward.address), services, port).ready()
    run_dir, log = tmp_path / "run", tmp_path / "learner.log"
    steps = 8
    learner = processes.popen(
        learner_argv(run_dir, model, data, [rollout.address], "--max-steps", str(steps)), log
    )

    wait_for(lambda: len(raw_metrics(run_dir)) >= 2 or learner.poll() is not None, 300, "two trained steps")
    rollout.process.send_signal(signal.SIGKILL)
    rollout.process.wait()
    killed_after = len(raw_metrics(run_dir))
    assert learner.poll() is None and killed_after < steps, "the run ended before the rollout was killed"
    restarted = processes.launch_service(
        "rollout-restarted", rollout_argv(model, reward.address), services, port
    ).ready()
    finish(learner, log)

    # Every step exactly once, each trained on exactly its prompts_per_step groups.
    records = raw_metrics(run_dir)
    assert [r["step"] for r in records] == list(range(1, steps + 1)), tail(log)
    assert [r["num_groups"] for r in records] == [PROMPTS_PER_STEP] * steps
    # The cursor drew exactly steps x prompts_per_step prompts and nothing is left pending: with
    # full steps, no prompt was skipped, and none was drawn (so trained) a second time.
    final = trainer_state(run_dir / "checkpoints" / f"step-{steps:06d}")
    assert final["data"] == {"position": steps * PROMPTS_PER_STEP, "pending": []}
    assert "re-sending" in log.read_text(), "the learner never had to re-send a prompt"
    # The new process was brought to the learner's current weights.
    assert rollout_info(restarted.address).policy_version == steps


def test_learner_killed_resumes_from_its_last_checkpoint(
    tmp_path: Path, assets: tuple[Path, Path], reward: Service, processes: Processes
) -> None:
    model, data = assets
    rollout = processes.launch_service(
        "rollout", rollout_argv(model, reward.address), tmp_path / "services"
    ).ready()
    run_dir, checkpoints = tmp_path / "run", tmp_path / "run" / "checkpoints"
    steps = 8
    argv = learner_argv(
        run_dir, model, data, [rollout.address], "--max-steps", str(steps), "--set", "checkpoint.interval=2"
    )
    first = processes.popen(argv, tmp_path / "first.log")
    wait_for(lambda: (checkpoints / "step-000002").exists() or first.poll() is not None, 300, "a checkpoint")
    first.send_signal(signal.SIGKILL)
    first.wait()
    kept = sorted(checkpoints.glob("step-*"))
    resumed_step = trainer_state(kept[-1])["step"]
    assert resumed_step < steps, "the first learner finished before it was killed"
    logged_before = len(raw_metrics(run_dir))

    second_log = tmp_path / "second.log"
    finish(processes.popen([*argv, "--resume"], second_log), second_log)

    assert f"resumed from {kept[-1]}" in second_log.read_text()
    new_records = raw_metrics(run_dir)[logged_before:]
    assert [r["step"] for r in new_records] == list(range(resumed_step + 1, steps + 1))
    assert [r["policy_version"] for r in new_records] == list(range(resumed_step + 1, steps + 1))
    records = read_metrics(run_dir)
    assert [r["step"] for r in records] == list(range(1, steps + 1))
    assert all(r["num_groups"] == PROMPTS_PER_STEP for r in records)
    final = trainer_state(checkpoints / f"step-{steps:06d}")
    assert final["data"] == {"position": steps * PROMPTS_PER_STEP, "pending": []}
    assert rollout_info(rollout.address).policy_version == steps
