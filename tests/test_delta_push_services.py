"""Delta pushes and weight fingerprints between the real learner and a real RolloutService (issue 27).

The rollout (hf backend, a tiny model) runs in this process on loopback gRPC, with the reward
stand-in behind it. A run with `push.delta = true` trains exactly as one without (the same groups,
so the same weights, and the rollout serves the same bits and logits); one element corrupted on
the rollout side after an update is caught by the next push's fingerprint, or before any push by a
GetInfo probe, and resynced.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import torch
from grpo_common.server import ServerConfig
from grpo_common.weights.delta import element_bits
from grpo_learner.config import LearnerConfig
from grpo_learner.config import RolloutConfig as PoolSettings
from grpo_learner.data.prompts import ListPromptSource, PromptItem
from grpo_learner.monitoring.metrics import MetricsLogger, read_metrics
from grpo_learner.rollouts.pool import MemberState, RolloutPool
from grpo_learner.training.assembly import build_trainer
from grpo_learner.training.checkpoint import TrainerState
from grpo_learner.training.loop import build_feed, train_loop
from grpo_learner.weight_sync.grpc_pusher import WeightPusher
from grpo_rollout.app import running_rollout
from grpo_rollout.config import HFSettings, LimitSettings, RewardSettings, RolloutConfig

ROLLOUT_TESTS = Path(__file__).resolve().parents[1] / "packages" / "rollout" / "tests"
sys.path.insert(0, str(ROLLOUT_TESTS))

from rollout_reward_standin import RewardStandin  # noqa: E402
from rollout_testkit import build_model_dir  # noqa: E402

torch.set_num_threads(1)
STEPS = 3
PROBE = torch.tensor([[1, 5, 6, 7, 8, 9]])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture
def reward():
    standin = RewardStandin().start()
    yield standin
    standin.stop()


def rollout_config(model_dir: Path, reward: RewardStandin, **limits: float) -> RolloutConfig:
    return RolloutConfig(
        model=str(model_dir),
        server=ServerConfig(port=0, grace_seconds=0),
        reward=RewardSettings(address=reward.address, timeout_s=10),
        hf=HFSettings(dtype="bfloat16"),  # the dtype rollouts serve on GPUs; the learner pushes it
        limits=LimitSettings(**limits),
    )


def served_bits(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What the rollout's model serves, as raw bits (so -0.0 and NaN payloads compare exactly)."""
    return {name: element_bits(t).clone() for name, t in model.state_dict().items()}


def serves_exactly(served: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]) -> bool:
    """The rollout serves `weights` in the push dtype (bf16), bit for bit."""
    return all(torch.equal(served[n], element_bits(t.bfloat16())) for n, t in weights.items())


def corrupt_one_element(model: torch.nn.Module) -> None:
    """Flip one bit of one element of what the rollout serves, behind its back."""
    with torch.no_grad():
        element_bits(model.model.layers[1].mlp.up_proj.weight).view(-1)[7] ^= 1 << 3


def train(model_dir: Path, reward: RewardStandin, run_dir: Path, delta: bool):
    """STEPS GRPO steps against a fresh rollout; the learner's weights, what the rollout serves
    (bits and the logits of one probe) and the per-step metrics."""
    prompts = ListPromptSource(
        [PromptItem(id=f"p{i}", reference="7", token_ids=(1, 5 + i, 6)) for i in range(STEPS * 4)]
    )

    async def scenario():
        async with running_rollout(rollout_config(model_dir, reward)) as rollout:
            config = LearnerConfig.model_validate(
                {
                    "model": {"name_or_path": str(model_dir)},
                    "rollout": {
                        "addresses": [rollout.server.address],
                        "group_size": 4,
                        "prompts_per_step": 4,
                        "sampling": {"max_new_tokens": 6},
                    },
                    "push": {"dtype": "bfloat16", "delta": delta},
                    "optim": {"lr": 1e-4},
                    "train": {"max_steps": STEPS, "micro_batch_size": 16, "seed": 1},
                    "checkpoint": {"interval": 100},
                    "run_dir": str(run_dir),
                    "tensorboard": False,
                }
            )
            pool = RolloutPool.from_config(config.rollout)
            pusher = WeightPusher(pool, deadline_s=30, dtype=torch.bfloat16, delta=delta)
            feed = build_feed(config, prompts, pool, pusher)
            trainer = build_trainer(config, str(model_dir), 0, str(model_dir))
            logger = MetricsLogger(run_dir, total_steps=STEPS, tensorboard=False, progress=False)
            try:
                await train_loop(config, trainer, feed, TrainerState(0, 0), pusher=pusher, metrics=logger)
            finally:
                await feed.close()
                await pusher.close()
                logger.close()
            model = rollout.generator.model
            with torch.no_grad():
                logits = model(PROBE).logits
            served = served_bits(model)
            learner = {name: t.detach().clone() for name, t in trainer.model.state_dict().items()}
            return learner, served, logits

    learner, served, logits = asyncio.run(scenario())
    return learner, served, logits, read_metrics(run_dir)


def test_a_run_with_delta_pushes_trains_exactly_as_one_with_full_pushes(
    model_dir: Path, reward: RewardStandin, tmp_path: Path
) -> None:
    full = train(model_dir, reward, tmp_path / "full", delta=False)
    delta = train(model_dir, reward, tmp_path / "delta", delta=True)
    learner_full, served_full, logits_full, metrics_full = full
    learner_delta, served_delta, logits_delta, metrics_delta = delta
    assert learner_full.keys() == learner_delta.keys()
    assert all(torch.equal(learner_full[n], learner_delta[n]) for n in learner_full)
    assert all(torch.equal(served_full[n], served_delta[n]) for n in served_full)
    assert torch.equal(logits_full, logits_delta)
    # the rollout serves the learner's weights in the push dtype, bit for bit
    assert serves_exactly(served_delta, learner_delta)
    # and the delta run did send deltas after its first push
    pushes = [m for m in metrics_delta if "push/full_pushes" in m]
    assert [m["push/full_pushes"] for m in pushes] == [1.0] + [0.0] * (STEPS - 1)
    assert all(0.0 < m["push/delta_fraction"] < 1.0 for m in pushes[1:])
    full_bytes = [m["push/bytes"] for m in metrics_full if "push/bytes" in m]
    assert all(m["push/bytes"] < full_bytes[0] for m in pushes[1:])
    assert all(m["push/fingerprint_mismatch"] == 0.0 for m in pushes)


def test_one_corrupted_element_on_the_rollout_is_caught_by_the_fingerprint_and_resynced(
    model_dir: Path, reward: RewardStandin
) -> None:
    async def scenario():
        async with running_rollout(rollout_config(model_dir, reward)) as rollout:
            model = rollout.generator.model
            weights = {n: t.detach().clone().float() for n, t in model.state_dict().items()}
            address = rollout.server.address
            pool = RolloutPool([address])
            pusher = WeightPusher(pool, deadline_s=30, dtype=torch.bfloat16, delta=True)
            try:
                assert await pusher.push(weights, 1) == []
                first = pusher.metrics()
                nudged = {n: t * 1.01 for n, t in weights.items()}
                assert await pusher.push(nudged, 2) == []
                second = pusher.metrics()
                corrupt_one_element(model)  # on the rollout side, after an update
                again = {n: t * 1.01 for n, t in nudged.items()}
                await pusher.push(again, 3)
                member = pool.get(address)
                await wait_until(lambda: member.state is MemberState.READY and member.version == 3)
                third = pusher.metrics()
                served = served_bits(model)
            finally:
                await pusher.close()
            return first, second, third, served, again

    first, second, third, served, again = asyncio.run(scenario())
    assert first["push/full_pushes"] == 1 and first["push/fingerprint_mismatch"] == 0
    assert second["push/full_pushes"] == 0 and second["push/fingerprint_mismatch"] == 0  # a delta
    # the delta applied on the corrupted base: caught, then every tensor sent whole
    assert third["push/fingerprint_mismatch"] == 1 and third["push/full_pushes"] == 1
    assert serves_exactly(served, again)


def test_one_corrupted_element_on_the_rollout_is_caught_by_a_probe_before_any_push(
    model_dir: Path, reward: RewardStandin
) -> None:
    """The rollout re-reads its fingerprint now and then (limits.fingerprint_recheck_s) and GetInfo
    reports it; the learner's probe sees another fingerprint for the version it pushed and resyncs
    the service with every tensor whole (taken again from the live weights: no snapshot was kept)."""

    async def scenario():
        async with running_rollout(rollout_config(model_dir, reward, fingerprint_recheck_s=0.05)) as rollout:
            model = rollout.generator.model
            weights = {n: t.detach().clone().float() * 1.01 for n, t in model.state_dict().items()}
            address = rollout.server.address
            pool = RolloutPool([address], PoolSettings(probe_interval_s=0.05))
            pusher = WeightPusher(pool, deadline_s=30, dtype=torch.bfloat16)
            try:
                assert await pusher.push(weights, 1) == []
                first = pusher.metrics()
                corrupt_one_element(model)  # on the rollout side, after an update
                await wait_until(lambda: pool.fingerprint_mismatches == 1, timeout_s=60)
                member = pool.get(address)
                await wait_until(lambda: member.state is MemberState.READY and member.version == 1, 60)
                resynced = pusher.metrics()
                served = served_bits(model)
            finally:
                await pusher.close()
            return first, resynced, served, weights

    first, resynced, served, weights = asyncio.run(scenario())
    assert first["push/full_pushes"] == 1 and first["push/fingerprint_mismatch"] == 0
    assert resynced["push/fingerprint_mismatch"] == 1 and resynced["push/full_pushes"] == 1
    assert serves_exactly(served, weights)


async def wait_until(predicate, timeout_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_a_refused_delta_is_answered_at_once_with_every_tensor_whole(
    model_dir: Path, reward: RewardStandin
) -> None:
    """The service changed behind the learner's back (another learner's push, same version): it refuses the
    delta (FAILED_PRECONDITION) and the pusher sends everything, without backoff or a mismatch."""

    async def scenario():
        async with running_rollout(rollout_config(model_dir, reward)) as rollout:
            model = rollout.generator.model
            weights = {n: t.detach().clone().float() for n, t in model.state_dict().items()}
            # no probes: one would see the intruder's fingerprint for version 1 and resync before the delta
            pool = RolloutPool([rollout.server.address], PoolSettings(probe_interval_s=0))
            pusher = WeightPusher(
                pool, deadline_s=30, dtype=torch.bfloat16, delta=True, initial_backoff_s=5.0
            )
            try:
                await pusher.push(weights, 1)
                pusher.metrics()
                intruder = WeightPusher([rollout.server.address], deadline_s=30, dtype=torch.bfloat16)
                try:  # another learner pushes other weights under the same version
                    await intruder.push({n: t * 2 for n, t in weights.items()}, 1)
                finally:
                    await intruder.close()
                nudged = {n: t * 1.01 for n, t in weights.items()}
                behind = await pusher.push(nudged, 2)
                metrics = pusher.metrics()
                served = served_bits(model)
            finally:
                await pusher.close()
            return behind, metrics, served, nudged

    behind, metrics, served, nudged = asyncio.run(scenario())
    assert behind == []
    assert metrics["push/full_pushes"] == 1 and metrics["push/fingerprint_mismatch"] == 0
    assert serves_exactly(served, nudged)
