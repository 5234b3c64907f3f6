"""The training loop end to end: exact resume after a crash, and a run against real gRPC services."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from grpo_learner.config import LearnerConfig
from grpo_learner.data.prompts import ListPromptSource, PromptItem
from grpo_learner.data.sources import StepBatch
from grpo_learner.data.synthetic import SyntheticGroupSource
from grpo_learner.monitoring.metrics import read_metrics
from grpo_learner.monitoring.plot import plot_run
from grpo_learner.training.checkpoint import latest_checkpoint
from grpo_learner.training.loop import run_training
from learner_fixtures import save_tiny_model
from recording_rollout import RecordingRollout, start_recording_rollout
from safetensors.torch import load_file

torch.set_num_threads(1)

TRL_NAMES = {
    "reward",
    "reward_std",
    "frac_reward_zero_std",
    "kl",
    "entropy",
    "clip_ratio/low_mean",
    "clip_ratio/high_mean",
    "completions/mean_length",
    "completions/clipped_ratio",
    "step_time",
    "tokens_per_second",
    "policy_version",
}


@dataclass
class CrashingSource(SyntheticGroupSource):
    crash_at: int = -1

    async def next_batch(self, step: int, policy_version: int) -> StepBatch:
        if step == self.crash_at:
            raise RuntimeError("simulated learner crash")
        return await super().next_batch(step, policy_version)


def config(model_dir: str, run_dir: Path, **sections) -> LearnerConfig:
    data = {
        "model": {"name_or_path": model_dir},
        "rollout": {
            "group_size": 4,
            "prompts_per_step": 3,
            "sampling": {"max_new_tokens": 12, "temperature": 0.9},
        },
        "optim": {"lr": 3e-3, "warmup_steps": 1, "schedule": "cosine", "weight_decay": 0.01},
        "loss": {"loss_type": "grpo", "num_iterations": 2, "epsilon_high": 0.28},
        "train": {"max_steps": 4, "micro_batch_size": 5, "seed": 3},
        "checkpoint": {"interval": 2, "keep_last": 2},
        "run_dir": str(run_dir),
        "tensorboard": False,
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return LearnerConfig.model_validate(data)


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    return load_file(checkpoint / "model" / "model.safetensors")


def test_crash_and_resume_gives_bit_identical_weights(tmp_path: Path):
    model_dir = save_tiny_model(tmp_path / "model")
    straight = config(model_dir, tmp_path / "straight")
    asyncio.run(run_training(straight, source=SyntheticGroupSource(seed=5), progress=False))

    crashed = config(model_dir, tmp_path / "crashed")
    with pytest.raises(RuntimeError, match="simulated"):
        asyncio.run(run_training(crashed, source=CrashingSource(seed=5, crash_at=3), progress=False))
    assert latest_checkpoint(tmp_path / "crashed" / "checkpoints").name == "step-000002"
    torch.manual_seed(999)
    resumed = crashed.model_copy(
        update={"checkpoint": crashed.checkpoint.model_copy(update={"resume": True})}
    )
    state = asyncio.run(run_training(resumed, source=SyntheticGroupSource(seed=5), progress=False))
    assert state.step == 4 and state.data == {"cursor": 4}

    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "crashed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    lines = (tmp_path / "crashed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 3, 4]  # step 3 was lost in the crash
    assert [r["step"] for r in read_metrics(tmp_path / "crashed")] == [1, 2, 3, 4]


def test_loop_against_real_rollout_services_with_window_dynamic_sampling_and_push(tmp_path: Path):
    model_dir = save_tiny_model(tmp_path / "model")
    prompts = ListPromptSource(
        [PromptItem(id=f"p{i}", reference="0", token_ids=(2, 3, 4 + i)) for i in range(10)]
    )

    def rewards(prompt_id: str, index: int) -> float:  # "p0" and "p1" are always solved: no signal
        return 1.0 if prompt_id.split("@")[0] in ("p0", "p1") else float(index % 2)

    cfg = config(
        model_dir,
        tmp_path / "run",
        rollout={"max_staleness": 1},
        loss={"beta": 0.04, "loss_type": "dapo", "num_iterations": 1},
        train={"max_steps": 3, "dynamic_sampling": True, "max_refill_rounds": 3},
        data={"shuffle": False},
        checkpoint={"interval": 3},
    )

    async def scenario():
        services = [RecordingRollout(rewards_for=rewards), RecordingRollout(rewards_for=rewards)]
        servers = [await start_recording_rollout(s) for s in services]
        try:
            state = await run_training(cfg, prompts, addresses=[s.address for s in servers], progress=False)
        finally:
            for server in servers:
                await server.stop(0)
        return services, state

    services, state = asyncio.run(scenario())
    assert state.step == 3 and state.policy_version == 3
    for service in services:
        assert [v for v, _ in service.updates] == [1, 2, 3]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 3
    assert records[0].keys() >= TRL_NAMES
    assert all(r["num_groups"] == 3 for r in records)  # refilled to a full batch every step
    assert records[0]["groups/dropped_zero_std"] == 2  # p0 and p1 of step 0
    assert records[0]["frac_reward_zero_std"] == pytest.approx(2 / 5)
    assert records[0]["groups/refill_rounds"] >= 1
    # The window: steps 0 and 1 are requested at once (min version 0); later requests need >= 1.
    mins = sorted(r.min_policy_version for s in services for r in s.requests)
    assert mins[0] == 0 and mins[-1] >= 1
    checkpoint = latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert checkpoint.name == "step-000003"
    assert json.loads((checkpoint / "trainer_state.json").read_text())["data"]["position"] >= 9
    png = plot_run(tmp_path / "run")
    assert png.stat().st_size > 10_000


@dataclass
class ThreadCountingSource(SyntheticGroupSource):
    """Records how many threads torch uses while the run asks for each batch."""

    threads_seen: list[int] | None = None

    async def next_batch(self, step: int, policy_version: int) -> StepBatch:
        self.threads_seen = [*(self.threads_seen or []), torch.get_num_threads()]
        return await super().next_batch(step, policy_version)


def test_train_torch_threads_sets_the_learners_thread_count(tmp_path: Path):
    model_dir = save_tiny_model(tmp_path / "model")
    source = ThreadCountingSource(seed=5)
    try:  # this module runs at 1 thread; the setting must change that for the run
        run = config(model_dir, tmp_path / "run", train={"max_steps": 2, "torch_threads": 2})
        asyncio.run(run_training(run, source=source, progress=False))
        assert source.threads_seen == [2, 2]
    finally:
        torch.set_num_threads(1)
