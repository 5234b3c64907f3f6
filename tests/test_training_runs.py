"""Whole training runs with every service a real process on loopback, as a user runs them.

- the one-command default (`grpo train`, shortened), and its children dying with it;
- services started independently, the learner connecting by address to two rollout services;
- kill -9 of the rollout service mid-run, restarted on the same port: nothing lost or trained twice;
- kill -9 of the learner, restarted with --resume: it continues from its last checkpoint.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
import torch
from grpo.v1 import rollout_pb2, rollout_pb2_grpc
from grpo_learner.embedded.model import build_tiny_model
from grpo_learner.embedded.task import split_problems
from grpo_learner.embedded.tokenizer import build_tokenizer
from grpo_learner.local.service_processes import ServiceProcess, find_executable, start_service
from grpo_learner.monitoring.metrics import read_metrics
from transformers import AutoModelForCausalLM

pytestmark = pytest.mark.slow

# Small enough for 2 CPU cores: 4 prompts x 4 completions of <= 8 tokens per step.
LEARNER_FLAGS = [
    "--no-progress",
    "--set", "data.apply_chat_template=false",
    "--set", "rollout.group_size=4",
    "--set", "rollout.prompts_per_step=4",
    "--set", "rollout.sampling.max_new_tokens=8",
    "--set", "rollout.backoff_s=0.2",
    "--set", "optim.lr=1e-3",
    "--set", "tensorboard=false",
    "--set", "train.device=cpu",
]  # fmt: skip


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("assets")
    tokenizer = build_tokenizer()
    model = build_tiny_model(tokenizer, seed=0)
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    train, _ = split_problems(0)
    data = root / "problems.jsonl"
    data.write_text("\n".join(json.dumps({"question": p.prompt, "answer": p.reference}) for p in train[:64]))
    return root / "model", data


class Deployment:
    """A reward service plus any number of rollout services, each a real process; all stopped at the end."""

    def __init__(self, model: Path, state_dir: Path) -> None:
        self.model = model
        self.state_dir = state_dir
        self.processes: list[ServiceProcess] = []
        self.reward = self._track(
            start_service("reward", [find_executable("grpo-reward"), "serve", "--workers", "1"], state_dir)
        )

    def _track(self, service: ServiceProcess) -> ServiceProcess:
        self.processes.append(service)
        return service

    def add_rollout(self, name: str = "rollout", port: int = 0) -> ServiceProcess:
        argv = [
            find_executable("grpo-rollout"), "serve", "--model", str(self.model), "--generator", "hf",
            "--device", "cpu", "--torch-threads", "1", "--reward-address", self.reward.address,
        ]  # fmt: skip
        return self._track(start_service(name, argv, self.state_dir, port=port))

    def stop(self) -> None:
        for service in reversed(self.processes):
            service.stop(timeout_s=5)


@pytest.fixture
def deployment(tmp_path: Path, model_and_data: tuple[Path, Path]) -> Iterator[Deployment]:
    started = Deployment(model_and_data[0], tmp_path / "services")
    yield started
    started.stop()


def learner(run_dir: Path, model: Path, data: Path, rollouts: list[str], *extra: str) -> subprocess.Popen:
    argv = [
        find_executable("grpo"),
        "train",
        "--model",
        str(model),
        "--data",
        str(data),
        "--run-dir",
        str(run_dir),
    ]
    for address in rollouts:
        argv += ["--rollout", address]
    run_dir.mkdir(parents=True, exist_ok=True)
    log = (run_dir / "learner.log").open("ab")
    return subprocess.Popen([*argv, *LEARNER_FLAGS, *extra], stdout=log, stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen, run_dir: Path, timeout_s: float = 300) -> None:
    code = process.wait(timeout_s)
    assert code == 0, (run_dir / "learner.log").read_text()[-3000:]


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def steps_logged(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def final_cursor(run_dir: Path, steps: int) -> dict:
    """The data cursor stored with the last checkpoint (the one for `steps`)."""
    state = json.loads((run_dir / "checkpoints" / f"step-{steps:06d}" / "trainer_state.json").read_text())
    return state["data"]


def rollout_info(address: str) -> rollout_pb2.RolloutInfo:
    async def ask() -> rollout_pb2.RolloutInfo:
        async with grpc.aio.insecure_channel(address) as channel:
            return await rollout_pb2_grpc.RolloutServiceStub(channel).GetInfo(
                rollout_pb2.GetInfoRequest(), timeout=10
            )

    return asyncio.run(ask())


def wait_for_prompts_in_flight(address: str, timeout_s: float) -> None:
    """Poll GetInfo over one channel every 10 ms: a step's generation can be shorter than one poll
    through a fresh channel, so slow polling can miss every window and watch the run end instead."""

    async def poll() -> bool:
        deadline = time.monotonic() + timeout_s
        async with grpc.aio.insecure_channel(address) as channel:
            stub = rollout_pb2_grpc.RolloutServiceStub(channel)
            while time.monotonic() < deadline:
                info = await stub.GetInfo(rollout_pb2.GetInfoRequest(), timeout=10)
                if info.in_flight_prompts > 0:
                    return True
                await asyncio.sleep(0.01)
        return False

    if not asyncio.run(poll()):
        raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for prompts in flight")


def policy_version(address: str) -> int:
    return rollout_info(address).policy_version


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_default_command_trains_reports_and_cleans_up(tmp_path: Path) -> None:
    run_dir = tmp_path / "default"
    result = subprocess.run(
        [find_executable("grpo"), "train", "--warmup-steps", "30", "--max-steps", "2",
         "--run-dir", str(run_dir), "--no-progress", "--set", "tensorboard=false"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["wall_seconds"] > 0
    assert 0 <= summary["heldout_accuracy_before"] <= 1 and 0 <= summary["heldout_accuracy_after"] <= 1
    records = read_metrics(run_dir)
    assert [r["step"] for r in records] == [0, 1, 2]  # step 0: the warm-up model's held-out accuracy
    assert all("reward" in r and "policy_version" in r for r in records[1:])
    assert (run_dir / "curves.png").stat().st_size > 0
    assert (run_dir / "checkpoints" / "step-000002" / "model" / "config.json").exists()
    assert "after GRPO" in result.stdout and "maj@8" in result.stdout  # the before/after table
    shares = {"greedy_accuracy", "pass@1", "pass@8", "maj@8"}
    assert set(summary["heldout_before"]) == shares | {"greedy_reward", "greedy_completion_chars"}
    assert "greedy_reward" not in result.stdout  # the default table shows them only where a task asks
    assert len((run_dir / "heldout.jsonl").read_text().splitlines()) == summary["heldout_problems"]
    for name in ("reward", "rollout"):
        assert "serving on" in (run_dir / "services" / f"{name}.log").read_text()
    assert not processes_mentioning(str(run_dir)), "a child service outlived grpo train"


def test_default_command_with_lora_pushes_merged_weights_and_exports(tmp_path: Path) -> None:
    """The embedded default with [model.lora]: the hf rollout service takes the merged weights every
    step (no service behind), checkpoints hold adapters, `grpo export --merge` loads as a plain model."""
    run_dir = tmp_path / "lora"
    result = subprocess.run(
        [find_executable("grpo"), "train", "--warmup-steps", "30", "--max-steps", "2",
         "--run-dir", str(run_dir), "--no-progress", "--set", "tensorboard=false",
         "--set", "model.lora.rank=8", "--set", "loss.beta=0.04", "--set", "optim.lr=2e-3"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert 0 < summary["trainable_parameters"] < summary["total_parameters"] / 5
    records = [r for r in read_metrics(run_dir) if "push/services_behind" in r]
    assert len(records) == 2 and all(r["push/services_behind"] == 0 and r["kl"] >= 0 for r in records)
    checkpoint = run_dir / "checkpoints" / "step-000002"
    assert (checkpoint / "model" / "adapter_model.safetensors").is_file()
    out = tmp_path / "merged"
    exported = subprocess.run(
        [find_executable("grpo"), "export", "--merge", str(checkpoint), str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr[-3000:]
    merged = AutoModelForCausalLM.from_pretrained(out)
    warm = AutoModelForCausalLM.from_pretrained(run_dir / "warmup")
    assert merged.state_dict().keys() == warm.state_dict().keys()
    assert not all(torch.equal(v, warm.state_dict()[k]) for k, v in merged.state_dict().items())


def processes_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                pids.append(int(entry.name))
    return pids


def test_services_die_with_a_killed_launcher(tmp_path: Path) -> None:
    run_dir = tmp_path / "orphans"
    launcher = subprocess.Popen(
        [find_executable("grpo"), "train", "--warmup-steps", "5", "--max-steps", "1000",
         "--run-dir", str(run_dir), "--no-progress", "--set", "tensorboard=false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: (run_dir / "services" / "rollout.port").exists(), 300, "the rollout service")
        children = [pid for pid in processes_mentioning(str(run_dir)) if pid != launcher.pid]
        assert children, "no child services found"
    finally:
        launcher.kill()
        launcher.wait()
    wait_for(lambda: not processes_mentioning(str(run_dir)), 30, "the child services to exit")


def test_independent_services_two_rollouts_and_a_staleness_window(
    tmp_path: Path, model_and_data: tuple[Path, Path], deployment: Deployment
) -> None:
    model, data = model_and_data
    services = [deployment.add_rollout("rollout-a"), deployment.add_rollout("rollout-b")]
    addresses = [service.address for service in services]
    run_dir = tmp_path / "run"
    finish(
        learner(run_dir, model, data, addresses, "--max-steps", "3", "--set", "rollout.max_staleness=1"),
        run_dir,
    )

    records = read_metrics(run_dir)
    assert [r["step"] for r in records] == [1, 2, 3]
    assert [r["policy_version"] for r in records] == [1, 2, 3]
    assert all(r["num_groups"] == 4 for r in records)
    assert all(r["rollout/services_ready"] == 2 for r in records)
    assert [policy_version(a) for a in addresses] == [3, 3]  # the weights reached both services
    for service in services:  # and both generated: each logs one line per Generate call it served
        streamed = re.findall(r"Generate: (\d+) of \d+ groups streamed", service.log_path.read_text())
        assert sum(int(n) for n in streamed) > 0, f"{service.name} generated nothing"


def test_strictly_on_policy_run_trains_each_step_on_its_own_version(
    tmp_path: Path, model_and_data: tuple[Path, Path], deployment: Deployment
) -> None:
    model, data = model_and_data
    rollout = deployment.add_rollout()
    run_dir = tmp_path / "run"
    finish(learner(run_dir, model, data, [rollout.address], "--max-steps", "3"), run_dir)
    records = read_metrics(run_dir)
    assert [r["policy_version"] for r in records] == [1, 2, 3]
    assert all(r.get("groups/dropped_stale", 0) == 0 and r["num_groups"] == 4 for r in records)
    # every token was sampled by the version the step updates: the learner measures lag from it
    assert all(r["sampler/stale_tokens"] == r["sampler/token_lag"] == 0 for r in records)
    assert policy_version(rollout.address) == 3


def test_rollout_killed_mid_run_loses_no_prompt(
    tmp_path: Path, model_and_data: tuple[Path, Path], deployment: Deployment
) -> None:
    model, data = model_and_data
    port = free_port()
    rollout = deployment.add_rollout(port=port)
    run_dir = tmp_path / "run"
    # longer completions: generation is most of a step, so the kill finds prompts in flight; partial
    # rollouts, so pushes land mid-generation too (their groups must respect the staleness bound)
    flags = ("--max-steps", "12", "--set", "rollout.sampling.max_new_tokens=24")
    flags += ("--set", "rollout.max_staleness=1", "--set", "rollout.partial=true")
    process = learner(run_dir, model, data, [rollout.address], *flags)
    try:
        wait_for(lambda: steps_logged(run_dir) >= 2, 300, "two trained steps")
        wait_for_prompts_in_flight(rollout.address, 60)
        rollout.process.send_signal(signal.SIGKILL)
        rollout.process.wait()
        assert process.poll() is None, "the run ended before the rollout service was killed"
        restarted = deployment.add_rollout(port=port)
        finish(process, run_dir)
    finally:
        process.kill()
    assert "re-send" in (run_dir / "learner.log").read_text()  # the killed stream's prompts went again
    records = read_metrics(run_dir)
    assert [r["step"] for r in records] == list(range(1, 13))  # every step once, none repeated
    assert all(r["num_groups"] == 4 for r in records)  # each step trained exactly its 4 prompts
    # every prompt drawn was trained on or is still owed: none skipped; step 13's 4 prompts, drawn
    # ahead by the staleness window, are pending (a resumed run sends them first)
    assert final_cursor(run_dir, 12) == {"position": 13 * 4, "pending": [48, 49, 50, 51], "timed_out": []}
    assert policy_version(restarted.address) == 12  # the new process was brought to the current weights
    # step n trains on version n - 1: no trained token is more than max_staleness = 1 behind it, and
    # no group had to be dropped for it either
    assert all(r["step"] - 1 - r["groups/oldest_version"] <= 1 for r in records)
    assert all(r.get("groups/dropped_stale", 0) == 0 for r in records)


def test_learner_killed_resumes_from_its_checkpoint(
    tmp_path: Path, model_and_data: tuple[Path, Path], deployment: Deployment
) -> None:
    model, data = model_and_data
    rollout = deployment.add_rollout()
    run_dir = tmp_path / "run"
    flags = ("--max-steps", "30", "--set", "checkpoint.interval=2")
    first = learner(run_dir, model, data, [rollout.address], *flags)
    try:
        wait_for(lambda: (run_dir / "checkpoints" / "step-000002").exists(), 300, "the first checkpoint")
    finally:
        first.kill()
        first.wait()
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").glob("step-*"))
    assert checkpoints[-1] < "step-000030", "the first learner finished before it was killed"
    finish(learner(run_dir, model, data, [rollout.address], *flags, "--resume"), run_dir)
    resumed_from = run_dir / "checkpoints" / checkpoints[-1]
    assert f"resumed from {resumed_from}" in (run_dir / "learner.log").read_text()
    assert [r["step"] for r in read_metrics(run_dir)] == list(range(1, 31))
    assert final_cursor(run_dir, 30) == {"position": 30 * 4, "pending": [], "timed_out": []}
    assert policy_version(rollout.address) == 30
