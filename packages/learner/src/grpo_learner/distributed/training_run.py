"""A training run on several learner processes (torchrun): every rank builds its shard, rank 0 leads.

    all ranks:  join the process group -> load the model, shard it (FSDP2), optimizer over shards
                -> resume from the latest DCP checkpoint (same world size only)
    rank 0:     rollout feed + weight pusher + metrics; the ordinary loop, with a LeaderTeam that
                sends every update / weight gather / checkpoint to the other ranks
    others:     follow_leader: wait for rank 0's commands and do the collective part of each

A failure anywhere ends the job with a message: rank 0 tells the followers (ABORT) when it can; a
dead rank makes the others' next collective fail or time out (distributed.timeout_s).
"""

from __future__ import annotations

import logging

import torch

from grpo_learner.checkpoint import TrainerState, check_world_size, latest_checkpoint
from grpo_learner.config import LearnerConfig
from grpo_learner.distributed.fsdp import FsdpParallel
from grpo_learner.distributed.leader_team import CommandLink, LeaderTeam, RankWork, follow_leader
from grpo_learner.distributed.process_group import Ranks, init_distributed, shutdown_distributed
from grpo_learner.distributed.sharded_checkpoint import load_shards
from grpo_learner.loop import Evaluator, drive_training, load_run_tokenizer, pad_id, seed_everything
from grpo_learner.models import load_policy, load_reference
from grpo_learner.optim import build_optimizer, build_scheduler
from grpo_learner.prompts import PromptSource
from grpo_learner.sources import GroupSource
from grpo_learner.update import Trainer, UpdateSettings

logger = logging.getLogger(__name__)


def build_sharded_trainer(
    config: LearnerConfig, model_path: str, pad_token_id: int, ranks: Ranks
) -> tuple[Trainer, FsdpParallel]:
    """Policy (and reference) loaded on CPU, then sharded; AdamW over the shards.

    fully_shard moves one unit (a decoder layer, then the root) at a time to the rank's device and
    keeps only this rank's shard there, so the device never holds the whole model.
    """
    settings = UpdateSettings.from_config(config, pad_token_id)
    parallel = FsdpParallel(ranks, settings.temperature, settings.chunk_tokens)
    cpu = torch.device("cpu")
    model = load_policy(
        model_path,
        cpu,
        gradient_checkpointing=config.model.gradient_checkpointing,
        trust_remote_code=config.model.trust_remote_code,
    )
    parallel.wrap(model)
    reference = load_reference(
        model_path,
        cpu,
        config.loss.beta,
        trust_remote_code=config.model.trust_remote_code,
        dtype=torch.bfloat16 if ranks.device.type == "cuda" else torch.float32,
    )
    if reference is not None:
        parallel.wrap(reference)
    optimizer = build_optimizer(model, config.optim)
    scheduler = build_scheduler(optimizer, config.optim, config.train.max_steps * config.loss.num_iterations)
    return Trainer(model, optimizer, scheduler, settings, reference, parallel=parallel), parallel


async def run_distributed_training(
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
    """Every rank calls this (run_training does when WORLD_SIZE > 1); returns the final state."""
    ranks = init_distributed(config.distributed.timeout_s, config.train.device)
    # An exception skips the teardown on purpose: the group may be broken, and the process ends.
    state = await _run_rank(
        config,
        ranks,
        prompts,
        model_path=model_path or config.model.name_or_path,
        tokenizer_path=tokenizer_path,
        addresses=addresses,
        source=source,
        progress=progress,
        evaluator=evaluator,
        eval_every=eval_every,
    )
    shutdown_distributed()
    return state


async def _run_rank(
    config: LearnerConfig,
    ranks: Ranks,
    prompts: PromptSource | None,
    *,
    model_path: str,
    tokenizer_path: str | None,
    addresses: list[str] | None,
    source: GroupSource | None,
    progress: bool,
    evaluator: Evaluator | None,
    eval_every: int,
) -> TrainerState:
    seed_everything(config.train.seed)
    checkpoint = latest_checkpoint(config.checkpoint_dir) if config.checkpoint.resume else None
    if checkpoint is not None:
        check_world_size(checkpoint, ranks.world_size)  # every rank fails alike, before any collective
    tokenizer = load_run_tokenizer(config, model_path, tokenizer_path)
    trainer, parallel = build_sharded_trainer(config, model_path, pad_id(tokenizer), ranks)
    state = TrainerState(step=0, policy_version=0, world_size=ranks.world_size)
    if checkpoint is not None:
        root = parallel.root(trainer.model)
        state = load_shards(checkpoint, root, trainer.optimizer, trainer.scheduler, ranks)
        logger.info(
            "rank %d resumed from %s (step %d, policy version %d)",
            ranks.rank,
            checkpoint,
            state.step,
            state.policy_version,
        )
    work = RankWork(trainer, parallel, ranks, config.checkpoint_dir)
    link = CommandLink(ranks)
    if not ranks.is_main:
        return follow_leader(work, link)
    team = LeaderTeam(work, link, keep_last=config.checkpoint.keep_last, tokenizer=tokenizer)
    team.start()
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
    return state
