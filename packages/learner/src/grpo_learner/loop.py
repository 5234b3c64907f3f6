"""The training loop, top to bottom.

    for each step:
        groups  <- source.next_batch(step)         (rollout services; filtered, refilled)
        metrics <- team.update(groups)             (in a worker thread: gRPC streams keep flowing)
        push weights to every rollout service      (every `push.every` steps; never blocks past deadline)
        log metrics; checkpoint every `checkpoint.interval` steps

`train_loop` takes everything built (trainer, source, pusher); `run_training` builds it all from a
config, a prompt source and explicit model/tokenizer paths and rollout addresses, resuming from the
latest checkpoint when there is one.

On several processes (torchrun) this loop runs on rank 0 only; the `team` carries each update,
weight gather and checkpoint to the other ranks (`distributed.training_run.run_distributed_training`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from grpo_common.hf_tokenizer import load_tokenizer

from grpo_learner.checkpoint import TrainerState, check_world_size, latest_checkpoint, load_training_state
from grpo_learner.config import LearnerConfig
from grpo_learner.distributed.process_group import launched_distributed
from grpo_learner.metrics import MetricsLogger
from grpo_learner.models import load_policy, load_reference, pick_device
from grpo_learner.optim import build_optimizer, build_scheduler
from grpo_learner.phase_timer import PhaseTimer, rollout_timing
from grpo_learner.prompts import PromptCursor, PromptSource
from grpo_learner.rollouts.client import RolloutClient
from grpo_learner.rollouts.feed import RolloutFeed
from grpo_learner.rollouts.pool import PoolSettings
from grpo_learner.sources import GroupFilter, GroupSource
from grpo_learner.team import SingleProcessTeam, TrainingTeam
from grpo_learner.update import Trainer, UpdateSettings
from grpo_learner.weight_sync.grpc_pusher import WeightPusher
from grpo_learner.weight_sync.nccl_pusher import NcclWeightPusher

logger = logging.getLogger(__name__)

# Called with the policy version the rollout services serve; returns metrics such as
# {"eval/heldout_accuracy": 0.61}, logged with the step.
Evaluator = Callable[[int], Awaitable[dict[str, float]]]


async def train_loop(
    config: LearnerConfig,
    trainer: Trainer,
    source: GroupSource,
    state: TrainerState,
    *,
    pusher: WeightPusher | NcclWeightPusher | None = None,
    metrics: MetricsLogger | None = None,
    tokenizer=None,
    evaluator: Evaluator | None = None,
    eval_every: int = 0,
    team: TrainingTeam | None = None,
) -> TrainerState:
    if team is None:
        team = SingleProcessTeam(trainer, config.checkpoint_dir, config.checkpoint.keep_last, tokenizer)
    if pusher is not None and state.policy_version > 0:  # resumed: rollouts must serve our weights
        await pusher.push(await team.full_weights(), state.policy_version)
    source.weights_pushed(state.policy_version)
    served_version = state.policy_version  # the newest weights the rollout services have
    if evaluator is not None and eval_every and state.step == 0 and metrics is not None:
        metrics.log(0, await evaluator(served_version))  # the starting point of the curves
    for step in range(state.step, config.train.max_steps):
        step_start = time.perf_counter()
        timer = PhaseTimer()
        with timer.phase("wait_rollouts"):
            batch = await source.next_batch(step, state.policy_version)
        step_metrics: dict[str, float] = {}
        if batch.groups:
            with timer.phase("update"):
                step_metrics = await team.update(batch.groups)
            step_metrics.update(rollout_timing(batch.groups))
        else:
            logger.warning("step %d: no trainable group; weights unchanged", step)
        state = replace(state, step=step + 1, policy_version=state.policy_version + 1)

        if pusher is None:
            source.weights_pushed(state.policy_version)
            served_version = state.policy_version
        elif state.policy_version % config.push.every == 0:
            with timer.phase("push"):
                behind = await pusher.push(await team.full_weights(), state.policy_version)
            step_metrics["push/services_behind"] = len(behind)
            if isinstance(pusher, WeightPusher):
                step_metrics.update(pusher.pool.metrics())
            source.weights_pushed(state.policy_version)
            served_version = state.policy_version

        last_step = state.step == config.train.max_steps
        if evaluator is not None and eval_every and (state.step % eval_every == 0 or last_step):
            with timer.phase("evaluate"):
                step_metrics.update(await evaluator(served_version))
        if state.step % config.checkpoint.interval == 0 or last_step:
            state = replace(state, data=source.state_dict())
            with timer.phase("checkpoint"):
                await team.save_checkpoint(state)

        if metrics is not None:
            step_metrics.update(timer.metrics())
            step_metrics["timing/step"] = time.perf_counter() - step_start
            metrics.log(
                state.step, {**step_metrics, **batch.metrics(), "policy_version": state.policy_version}
            )
    return state


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_trainer(config: LearnerConfig, model_path: str, pad_token_id: int, reference_path: str) -> Trainer:
    device = pick_device(config.train.device)
    model = load_policy(
        model_path,
        device,
        gradient_checkpointing=config.model.gradient_checkpointing,
        trust_remote_code=config.model.trust_remote_code,
    )
    reference = load_reference(
        reference_path, device, config.loss.beta, trust_remote_code=config.model.trust_remote_code
    )
    optimizer = build_optimizer(model, config.optim)
    scheduler = build_scheduler(optimizer, config.optim, config.train.max_steps * config.loss.num_iterations)
    return Trainer(model, optimizer, scheduler, UpdateSettings.from_config(config, pad_token_id), reference)


def build_feed(
    config: LearnerConfig,
    prompts: PromptSource,
    addresses: list[str],
    pusher: WeightPusher | NcclWeightPusher | None = None,
) -> RolloutFeed:
    r = config.rollout
    client = RolloutClient(
        # one membership with the gRPC pusher: a service gets prompts only once it has the weights
        pusher.pool if isinstance(pusher, WeightPusher) else addresses,
        group_size=r.group_size,
        sampling=r.sampling,
        channel_config=r.channel,
        request_timeout_s=r.request_timeout_s,
        max_attempts=r.max_attempts,
        backoff_s=r.backoff_s,
        max_backoff_s=r.max_backoff_s,
        apply_chat_template=config.data.apply_chat_template,
        seed=config.train.seed,
        on_stale_service=pusher.resync if pusher is not None else None,
        pool_settings=PoolSettings.from_config(r),
    )
    group_filter = GroupFilter(
        group_size=r.group_size,
        max_staleness=r.max_staleness,
        reward_weights=UpdateSettings.from_config(config).reward_weights,
        combine=config.loss.advantage.combine,
        dynamic_sampling=config.train.dynamic_sampling,
    )
    cursor = PromptCursor(prompts, seed=config.train.seed, shuffle=config.data.shuffle)
    return RolloutFeed(
        client,
        cursor,
        group_filter,
        prompts_per_step=r.prompts_per_step,
        max_staleness=r.max_staleness,
        max_refill_rounds=config.train.max_refill_rounds,
    )


async def run_training(
    config: LearnerConfig,
    prompts: PromptSource | None = None,
    *,
    model_path: str | None = None,
    tokenizer_path: str | None = None,
    addresses: list[str] | None = None,
    source: GroupSource | None = None,
    progress: bool = True,
    evaluator: Evaluator | None = None,
    eval_every: int = 0,
) -> TrainerState:
    """Train per `config`. Give `prompts` (served by the rollout services at `addresses`, default
    config.rollout.addresses) or a ready `source`. Resumes from the latest checkpoint if any.

    Under torchrun (WORLD_SIZE > 1) every rank calls this; rank 0 alone uses `prompts`, `source`,
    `addresses` and `evaluator` (see distributed.training_run)."""
    if config.train.torch_threads:
        torch.set_num_threads(config.train.torch_threads)
    if launched_distributed():
        from grpo_learner.distributed.training_run import run_distributed_training

        return await run_distributed_training(
            config,
            prompts,
            model_path=model_path,
            tokenizer_path=tokenizer_path,
            addresses=addresses,
            source=source,
            progress=progress,
            evaluator=evaluator,
            eval_every=eval_every,
        )
    model_path = model_path or config.model.name_or_path
    seed_everything(config.train.seed)
    checkpoint = latest_checkpoint(config.checkpoint_dir) if config.checkpoint.resume else None
    if checkpoint is not None:
        check_world_size(checkpoint, 1)
    tokenizer = load_run_tokenizer(config, model_path, tokenizer_path)
    trainer = build_trainer(
        config, str(checkpoint / "model") if checkpoint else model_path, pad_id(tokenizer), model_path
    )
    state = TrainerState(step=0, policy_version=0)
    if checkpoint is not None:
        state = load_training_state(checkpoint, trainer.optimizer, trainer.scheduler)
        logger.info(
            "resumed from %s (step %d, policy version %d)", checkpoint, state.step, state.policy_version
        )
    team = SingleProcessTeam(trainer, config.checkpoint_dir, config.checkpoint.keep_last, tokenizer)
    return await drive_training(
        config,
        trainer,
        state,
        team,
        resumed=checkpoint is not None,
        prompts=prompts,
        addresses=addresses,
        source=source,
        tokenizer=tokenizer,
        progress=progress,
        evaluator=evaluator,
        eval_every=eval_every,
    )


def load_run_tokenizer(config: LearnerConfig, model_path: str, tokenizer_path: str | None = None):
    return load_tokenizer(
        tokenizer_path or config.model.tokenizer or model_path,
        trust_remote_code=config.model.trust_remote_code,
    )


def pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


async def drive_training(
    config: LearnerConfig,
    trainer: Trainer,
    state: TrainerState,
    team: TrainingTeam,
    *,
    resumed: bool,
    prompts: PromptSource | None,
    addresses: list[str] | None,
    source: GroupSource | None,
    tokenizer,
    progress: bool,
    evaluator: Evaluator | None,
    eval_every: int,
) -> TrainerState:
    """The part of a run that talks to the world (rank 0): pusher, group source, metrics, the loop."""
    addresses = config.rollout.addresses if addresses is None else addresses
    pusher: WeightPusher | NcclWeightPusher | None = None
    if addresses and config.push.transport == "nccl":
        pusher = NcclWeightPusher(addresses, config.push, config.rollout.channel)
    elif addresses or config.rollout.addresses_file:
        pusher = WeightPusher(
            addresses,
            config.rollout.channel,
            deadline_s=config.push.deadline_s,
            bucket_bytes=config.push.bucket_bytes,
            dtype=getattr(torch, config.push.dtype) if config.push.dtype else None,
            pool_settings=PoolSettings.from_config(config.rollout),
        )
    if source is None:
        if prompts is None:
            raise ValueError("run_training needs prompts (or a ready group source)")
        source = build_feed(config, prompts, addresses, pusher)
    if resumed and state.data:
        source.load_state_dict(state.data)
    metrics = MetricsLogger(
        Path(config.run_dir),
        total_steps=config.train.max_steps,
        start_step=state.step,
        tensorboard=config.tensorboard,
        progress=progress,
    )
    try:
        return await train_loop(
            config,
            trainer,
            source,
            state,
            pusher=pusher,
            metrics=metrics,
            tokenizer=tokenizer,
            evaluator=evaluator,
            eval_every=eval_every,
            team=team,
        )
    finally:
        metrics.close()
        await source.close()
        if pusher is not None:
            await pusher.close()
