"""Training over a shared rollout pool: a rollout service restarts mid-run and training goes on.

Built exactly the way `run_training` wires it: one `RolloutPool` from the config, the
`WeightPusher` and the feed's `RolloutClient` both on it, driven by the real `train_loop`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import torch
from grpo_learner.config import LearnerConfig
from grpo_learner.data.prompts import ListPromptSource, PromptItem
from grpo_learner.data.sources import StepBatch
from grpo_learner.rollouts.pool import MemberState, RolloutPool
from grpo_learner.training.assembly import build_trainer
from grpo_learner.training.checkpoint import TrainerState
from grpo_learner.training.loop import build_feed, train_loop
from grpo_learner.weight_sync.grpc_pusher import WeightPusher
from learner_fixtures import save_tiny_model
from pool_rollout import PoolRollout, start, wait_until

torch.set_num_threads(1)


class RestartBefore:
    """Delegates to the feed; before step `step` it stops one service and starts a fresh one
    (version 0, as after a process restart) on the same port."""

    def __init__(self, feed, step: int, restart) -> None:
        self.feed, self.step, self.restart = feed, step, restart

    async def next_batch(self, step: int, policy_version: int) -> StepBatch:
        if step == self.step:
            await self.restart()
        return await self.feed.next_batch(step, policy_version)

    def weights_pushed(self, version: int) -> None:
        self.feed.weights_pushed(version)

    def state_dict(self):
        return self.feed.state_dict()

    def load_state_dict(self, state) -> None:
        self.feed.load_state_dict(state)

    async def close(self) -> None:
        await self.feed.close()


def test_training_goes_on_when_a_rollout_service_restarts_and_it_gets_weights_before_prompts(tmp_path: Path):
    model_dir = save_tiny_model(tmp_path / "model")
    prompts = ListPromptSource(
        [PromptItem(id=f"p{i}", reference="0", token_ids=(2, 3, 4 + i)) for i in range(8)]
    )

    async def scenario():
        steady, first_life, second_life = PoolRollout(), PoolRollout(), PoolRollout(update_delay_s=0.2)
        steady_server, server = await start(steady), await start(first_life)
        port = server.port
        config = LearnerConfig.model_validate(
            {
                "model": {"name_or_path": model_dir},
                "rollout": {
                    "addresses": [steady_server.address, server.address],
                    "group_size": 4,
                    "prompts_per_step": 4,
                    "sampling": {"max_new_tokens": 8},
                    "backoff_s": 0.05,
                    "probe_interval_s": 0.05,
                    "probe_timeout_s": 0.3,
                    "unhealthy_after": 2,
                },
                "optim": {"lr": 1e-3},
                "train": {"max_steps": 5, "micro_batch_size": 8, "seed": 1},
                "checkpoint": {"interval": 100},
                "run_dir": str(tmp_path / "run"),
                "tensorboard": False,
            }
        )
        pool = RolloutPool.from_config(config.rollout)
        pusher = WeightPusher(pool, deadline_s=10)

        async def restart() -> None:
            nonlocal server
            await server.stop(0)
            await wait_until(lambda: pool.get(f"127.0.0.1:{port}").state is MemberState.DOWN, what="DOWN")
            server = await start(second_life, port=port)
            # Ready again means healthy *and* holding the current weights (its update takes 0.2 s,
            # probes see it healthy long before): only then does the feed send it prompts.
            await wait_until(lambda: pool.get(f"127.0.0.1:{port}").state is MemberState.READY, what="READY")

        feed = build_feed(config, prompts, pool, pusher)
        trainer = build_trainer(config, model_dir, 0, model_dir)
        try:
            state = await train_loop(
                config, trainer, RestartBefore(feed, 2, restart), TrainerState(0, 0), pusher=pusher
            )
        finally:
            await feed.close()
            await pusher.close()
            await server.stop(0)
            await steady_server.stop(0)
        return state, pool, steady, first_life, second_life

    state, pool, steady, first_life, second_life = asyncio.run(scenario())
    assert state.step == 5
    assert steady.update_versions() == [1, 2, 3, 4, 5]
    assert first_life.update_versions() == [1, 2]
    # Back after the restart: the weights of version 2 first, then prompts, then every later push.
    assert second_life.events[0] == ("update", 2)
    assert second_life.update_versions() == [2, 3, 4, 5]
    assert second_life.generate_events(), "the restarted service never got prompts again"
    assert pool.members == []  # the last user closed it
