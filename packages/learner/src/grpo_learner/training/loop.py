"""The training loop, top to bottom.

    for each step:
        groups  <- source.next_batch(step)         (rollout services; filtered, refilled)
        metrics <- team.update(groups)             (in a worker thread: gRPC streams keep flowing)
        push weights to every rollout service      (every `push.every` steps; never blocks past deadline)
        checkpoint every `checkpoint.interval` steps; log metrics (with timing/*, see phase_timer.py)

`train_loop` takes everything built (trainer, source, pusher); `run_training` builds it all from a
config, a prompt source and explicit model/tokenizer paths and rollout addresses (assembly.py for
the trainer, one rollout pool shared by the rollout client and the `WeightPush` of
`push.transport`), resuming from the latest checkpoint when there is one.

On several processes (torchrun) every rank runs the same `run_training`; the loop itself runs on
rank 0 only, and its `team` carries each update, weight gather and checkpoint to the other ranks
(distributed/training_run.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import torch

from grpo_learner.config import LearnerConfig
from grpo_learner.data.prompts import PromptCursor, PromptSource
from grpo_learner.data.sources import GroupFilter, GroupSource
from grpo_learner.distributed.process_group import (
    init_distributed,
    launched_distributed,
    shutdown_distributed,
)
from grpo_learner.distributed.training_run import follow, training_team
from grpo_learner.grpo.update import Trainer, reward_weights
from grpo_learner.lora.adapters import check_checkpoint_kind, parameter_counts
from grpo_learner.monitoring.metrics import MetricsLogger
from grpo_learner.monitoring.phase_timer import PhaseTimer, rollout_timing
from grpo_learner.rollouts.client import RolloutClient, environment_to_proto, reward_spec_to_proto
from grpo_learner.rollouts.feed import RolloutFeed
from grpo_learner.rollouts.pool import RolloutPool
from grpo_learner.training.assembly import (
    build_trainer,
    load_run_tokenizer,
    pad_id,
    resume_state,
    seed_everything,
)
from grpo_learner.training.checkpoint import TrainerState, check_world_size, latest_checkpoint
from grpo_learner.training.models import input_vocab_size
from grpo_learner.training.registered_names import check_registered_names
from grpo_learner.training.team import SingleProcessTeam, TrainingTeam
from grpo_learner.weight_sync.push_protocol import WeightPush
from grpo_learner.weight_sync.transports import build_pusher

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
    pusher: WeightPush | None = None,
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
    counts = parameter_counts(trainer.model)
    logger.info("policy: %d trainable of %d parameters", counts.trainable, counts.total)
    header = counts.metrics()  # model/trainable_parameters, model/total_parameters: first record only
    if evaluator is not None and eval_every and state.step == 0 and metrics is not None:
        metrics.log(0, {**header, **await evaluator(served_version)})  # the starting point of the curves
        header = {}
    for step in range(state.step, config.train.max_steps):
        step_start = time.perf_counter()
        timer = PhaseTimer()
        with timer.phase("wait_rollouts"):
            batch = await source.next_batch(step, state.policy_version)
        step_metrics: dict[str, float] = {}
        if batch.groups:
            if pusher is not None:  # a copy of the pushed weights is taken now only if still needed
                await pusher.weights_will_change()
            with timer.phase("update"):
                step_metrics = await team.update(batch.groups, state.policy_version)
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
            step_metrics.update(pusher.metrics())
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
            if "tokens/trained" in step_metrics:  # the whole loop's rate; tokens_per_second is the update's
                step_metrics["tokens/trained_per_second"] = (
                    step_metrics["tokens/trained"] / step_metrics["timing/step"]
                )
            metrics.log(
                state.step,
                {**header, **step_metrics, **batch.metrics(), "policy_version": state.policy_version},
            )
            header = {}
    return state


def build_feed(
    config: LearnerConfig,
    prompts: PromptSource,
    pool: RolloutPool,
    pusher: WeightPush | None = None,
    vocab_size: int | None = None,
) -> RolloutFeed:
    """The rollout feed over `pool`, the one the pusher shares: a service gets prompts only once it
    has the weights, and a stale one is resynced through the pusher. `vocab_size`: the policy's
    embedding rows; a group with a token beyond them is dropped as invalid."""
    r = config.rollout
    client = RolloutClient(
        pool,
        r,
        group_size=r.group_size,
        sampling=r.sampling,
        apply_chat_template=config.data.apply_chat_template,
        reward_spec=reward_spec_to_proto(config.reward),
        environment=environment_to_proto(r.environment),
        seed=config.train.seed,
        on_stale_service=pusher.resync if pusher is not None else None,
    )
    group_filter = GroupFilter(
        group_size=r.group_size,
        max_staleness=r.max_staleness,
        reward_weights=reward_weights(config.loss.advantage),
        combine=config.loss.advantage.combine,
        dynamic_sampling=config.train.dynamic_sampling,
        on_timeout=config.reward.on_timeout,
        required_components=tuple(config.reward.component_weights()),
        vocab_size=vocab_size,
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

    Under torchrun (WORLD_SIZE > 1) every rank calls this and runs the same assembly; rank 0 alone
    uses `prompts`, `source`, `addresses` and `evaluator` (see distributed.training_run)."""
    check_registered_names(config)  # a library caller gets the same message as `grpo train`
    if config.train.torch_threads:
        torch.set_num_threads(config.train.torch_threads)
    ranks = (
        init_distributed(config.distributed.timeout_s, config.train.device)
        if launched_distributed()
        else None
    )
    model_path = model_path or config.model.name_or_path
    seed_everything(config.train.seed)
    checkpoint = latest_checkpoint(config.checkpoint_dir) if config.checkpoint.resume else None
    if checkpoint is not None:  # every rank fails alike, before any collective
        check_world_size(checkpoint, ranks.world_size if ranks is not None else 1)
        check_checkpoint_kind(checkpoint / "model", config.model.lora)
    tokenizer = load_run_tokenizer(config, model_path, tokenizer_path)
    # One process resumes the policy from the checkpoint's HF export (LoRA: its adapters, on the
    # base model); ranks from their DCP shards.
    policy_path = str(checkpoint / "model") if checkpoint is not None and ranks is None else model_path
    trainer = build_trainer(config, policy_path, pad_id(tokenizer), model_path, ranks)
    state = resume_state(checkpoint, trainer, ranks)
    if checkpoint is not None:
        logger.info(
            "resumed from %s (step %d, policy version %d)", checkpoint, state.step, state.policy_version
        )
    if ranks is not None and not ranks.is_main:
        state = follow(trainer, ranks, config)
    else:
        team = training_team(trainer, ranks, config, tokenizer)
        try:
            state = await drive_training(
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
        except BaseException as exc:
            await team.close(exc)
            raise
        await team.close(state=state)
    if ranks is not None:  # an exception skips this on purpose: the group may be broken
        shutdown_distributed()
    return state


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
    """The part of a run that talks to the world (rank 0): pool, pusher, group source, metrics, loop."""
    addresses = config.rollout.addresses if addresses is None else addresses
    has_services = bool(addresses or config.rollout.addresses_file)
    pool = RolloutPool.from_config(config.rollout, addresses) if has_services or source is None else None
    pusher = build_pusher(config, pool, trainer.model) if has_services and pool is not None else None
    if source is None:
        if prompts is None or pool is None:
            raise ValueError("run_training needs prompts (or a ready group source)")
        source = build_feed(config, prompts, pool, pusher, input_vocab_size(trainer.model))
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
