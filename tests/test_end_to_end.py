"""Whole training runs as a user starts them: every service a real process, real gRPC on loopback.

- `grpo train` with no arguments (the embedded default, shortened): report, artefacts, clean exit;
- its child services die when the launcher is killed with SIGKILL;
- reward and two rollout services started independently, the learner connecting by address with a
  staleness window of 1: weights reach both services and both generate;
- a strictly on-policy run (max_staleness = 0).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from grpo_learner.metrics import read_metrics
from transformers import AutoModelForCausalLM

sys.path.insert(0, str(Path(__file__).parent))  # e2e_support lives beside this file
from e2e_support import (
    CHILD_ENV,
    GROUP_SIZE,
    PROMPTS_PER_STEP,
    GroupTap,
    Processes,
    Service,
    build_assets,
    console_script,
    finish,
    learner_argv,
    processes_mentioning,
    raw_metrics,
    reward_argv,
    rollout_argv,
    rollout_info,
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


def embedded_train(run_dir: Path, *extra: str) -> list[str]:
    return [console_script("grpo"), "train", "--run-dir", str(run_dir), "--no-progress", *extra]


def test_default_command_trains_reports_and_cleans_up(tmp_path: Path) -> None:
    run_dir = tmp_path / "default"
    result = subprocess.run(
        embedded_train(run_dir, "--warmup-steps", "30", "--max-steps", "3"),
        capture_output=True, text=True, timeout=400, env=CHILD_ENV,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 3
    assert summary["wall_seconds"] > 0
    assert 0 <= summary["heldout_accuracy_before"] <= 1
    assert 0 <= summary["heldout_accuracy_after"] <= 1
    assert "held-out accuracy" in result.stdout and "summary:" in result.stdout  # the table and paths

    records = read_metrics(run_dir)
    steps = [r for r in records if r["step"] >= 1]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert all(0 <= r["reward"] <= 1 for r in steps)
    assert [r["policy_version"] for r in steps] == [1, 2, 3]
    assert records[0]["step"] == 0 and "eval/heldout_accuracy" in records[0]  # the "before" point

    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any((run_dir / "tensorboard").glob("events.out.tfevents.*"))

    checkpoint = run_dir / "checkpoints" / "step-000003"
    assert trainer_state(checkpoint)["step"] == 3
    trained = AutoModelForCausalLM.from_pretrained(checkpoint / "model")
    warm = AutoModelForCausalLM.from_pretrained(run_dir / "warmup")
    changed = [
        name
        for (name, a), (_, b) in zip(trained.state_dict().items(), warm.state_dict().items(), strict=True)
        if not torch.equal(a, b)
    ]
    assert changed, "three GRPO steps left every weight as the warm-up model had it"

    for name in ("reward", "rollout"):
        assert "serving on" in (run_dir / "services" / f"{name}.log").read_text()
    assert not processes_mentioning(str(run_dir)), "a child service outlived grpo train"


def test_child_services_die_with_a_killed_launcher(tmp_path: Path) -> None:
    run_dir = tmp_path / "orphans"
    launcher = subprocess.Popen(
        embedded_train(run_dir, "--warmup-steps", "5", "--max-steps", "100000", "--set", "tensorboard=false"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=CHILD_ENV,
    )  # fmt: skip
    try:
        wait_for(lambda: (run_dir / "services" / "rollout.port").exists(), 300, "the rollout service")
        children = [pid for pid in processes_mentioning(str(run_dir)) if pid != launcher.pid]
        assert len(children) >= 2, f"expected reward and rollout children, found pids {children}"
    finally:
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
    wait_for(lambda: not processes_mentioning(str(run_dir)), 20, "the child services to exit")


def test_independent_services_two_rollouts_staleness_one(
    tmp_path: Path, assets: tuple[Path, Path], reward: Service, processes: Processes
) -> None:
    model, data = assets
    pending = [
        processes.launch_service(name, rollout_argv(model, reward.address), tmp_path / "services")
        for name in ("rollout-a", "rollout-b")
    ]
    rollouts = [p.ready() for p in pending]
    taps = [GroupTap(r.port, GROUP_SIZE) for r in rollouts]
    try:
        run_dir = tmp_path / "run"
        flags = ("--max-steps", "3", "--set", "rollout.max_staleness=1", "--set", "push.every=1")
        learner = processes.popen(
            learner_argv(run_dir, model, data, [t.address for t in taps], *flags), run_dir / "learner.log"
        )
        finish(learner, run_dir / "learner.log")
    finally:
        for tap in taps:
            tap.close()

    records = read_metrics(run_dir)
    assert [r["step"] for r in records] == [1, 2, 3]
    assert [r["policy_version"] for r in records] == [1, 2, 3]
    assert all(r["num_groups"] == PROMPTS_PER_STEP for r in records)
    # The weights reached both services: each serves the learner's final version.
    assert [rollout_info(r.address).policy_version for r in rollouts] == [3, 3]
    # The prompts were spread over both services, and no prompt was generated twice.
    seen = [set(t.prompt_ids) for t in taps]
    assert all(seen), f"groups streamed per service: {[len(s) for s in seen]}"
    assert not seen[0] & seen[1], "one prompt was generated by both services"
    assert len(seen[0] | seen[1]) >= 3 * PROMPTS_PER_STEP


def test_strictly_on_policy_run(
    tmp_path: Path, assets: tuple[Path, Path], reward: Service, processes: Processes
) -> None:
    model, data = assets
    rollout = processes.launch_service(
        "rollout", rollout_argv(model, reward.address), tmp_path / "services"
    ).ready()
    run_dir = tmp_path / "run"
    flags = ("--max-steps", "3", "--set", "rollout.max_staleness=0")
    learner = processes.popen(learner_argv(run_dir, model, data, [rollout.address], *flags), run_dir / "log")
    finish(learner, run_dir / "log")

    records = raw_metrics(run_dir)
    assert [r["step"] for r in records] == [1, 2, 3]
    versions = [r["policy_version"] for r in records]
    assert versions == sorted(set(versions)), f"policy versions not strictly increasing: {versions}"
    assert all(r["groups/received"] >= PROMPTS_PER_STEP for r in records)
    assert all(r["num_groups"] == PROMPTS_PER_STEP for r in records)
    assert all(r.get("groups/dropped_stale", 0) == 0 for r in records)
    assert rollout_info(rollout.address).policy_version == 3
