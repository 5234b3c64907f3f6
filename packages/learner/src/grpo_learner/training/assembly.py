"""Building a run's parts, the same code for one process and for each of N ranks (torchrun).

    ranks = None (one process) or this rank's facts (distributed.process_group.init_distributed)
    build_trainer  policy (+ reference, or LoRA adapters on it), FSDP2-sharded with ranks; AdamW; schedule
    resume_state   the latest checkpoint's state into the trainer (HF + optimizer, or DCP shards)

`loop.run_training` calls these; nothing here talks to the rollout services.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from grpo_common.hf_tokenizer import load_tokenizer

from grpo_learner.config import LearnerConfig
from grpo_learner.distributed.fsdp import FsdpParallel
from grpo_learner.distributed.process_group import Ranks
from grpo_learner.distributed.sharded_checkpoint import load_shards
from grpo_learner.grpo.optim import build_optimizer, build_scheduler
from grpo_learner.grpo.update import Trainer
from grpo_learner.lora.adapters import add_adapters, is_adapter_dir, load_adapters
from grpo_learner.training.checkpoint import TrainerState, load_training_state
from grpo_learner.training.models import load_policy, load_reference, pick_device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_run_tokenizer(config: LearnerConfig, model_path: str, tokenizer_path: str | None = None):
    return load_tokenizer(
        tokenizer_path or config.model.tokenizer or model_path,
        trust_remote_code=config.model.trust_remote_code,
    )


def pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def build_trainer(
    config: LearnerConfig,
    model_path: str,
    pad_token_id: int,
    reference_path: str,
    ranks: Ranks | None = None,
) -> Trainer:
    """The policy from `model_path`, the reference (beta > 0) from `reference_path`, AdamW.

    With [model.lora]: the base model from `reference_path`, its adapters from `model_path` when it
    is an adapter directory (a checkpoint's `model/`), else fresh ones; no reference model (the
    base under the adapters is the reference, see lora/adapters.py). Adapters are added before
    sharding, so FSDP2 shards base weights and adapters alike.

    With `ranks` both are loaded on CPU and sharded: fully_shard moves one unit (a decoder layer,
    then the root) at a time to the rank's device and keeps only this rank's shard there, so the
    device never holds the whole model.
    """
    parallel = FsdpParallel(ranks, config.train, config.rollout.sampling) if ranks else None
    device = torch.device("cpu") if ranks else pick_device(config.train.device)
    trust = config.model.trust_remote_code
    lora = config.model.lora
    model = load_policy(
        reference_path if lora.enabled else model_path,
        device,
        gradient_checkpointing=config.model.gradient_checkpointing,
        trust_remote_code=trust,
    )
    reference = None
    if lora.enabled:  # the reference is the base model under the adapters: nothing more to load
        resumed = is_adapter_dir(model_path)
        model = load_adapters(model, model_path, lora) if resumed else add_adapters(model, lora)
    else:
        # On CPU before sharding, the reference gets the dtype it will have on the rank's device.
        reference_dtype = None if ranks is None else torch.bfloat16 if ranks.device.type == "cuda" else None
        reference = load_reference(
            reference_path, device, config.loss.beta, trust_remote_code=trust, dtype=reference_dtype
        )
    if parallel is not None:
        parallel.wrap(model)
        if reference is not None:
            parallel.wrap(reference)
    optimizer = build_optimizer(model, config.optim)
    scheduler = build_scheduler(optimizer, config.optim, config.train.max_steps * config.loss.num_iterations)
    return Trainer(
        model, optimizer, scheduler, config, reference, parallel=parallel, pad_token_id=pad_token_id
    )


def resume_state(checkpoint: Path | None, trainer: Trainer, ranks: Ranks | None = None) -> TrainerState:
    """Optimizer, schedule, RNG and data state from `checkpoint` (a fresh state when None).

    One process: the policy itself was loaded from `checkpoint/model` (see run_training); ranks:
    every rank reads its DCP shards of policy and optimizer."""
    world_size = ranks.world_size if ranks is not None else 1
    if checkpoint is None:
        return TrainerState(step=0, policy_version=0, world_size=world_size)
    if ranks is None:
        return load_training_state(checkpoint, trainer.optimizer, trainer.scheduler)
    if not isinstance(trainer.parallel, FsdpParallel):
        raise TypeError("resuming on several ranks needs a trainer built with ranks (FSDP-sharded)")
    root = trainer.parallel.root(trainer.model)
    return load_shards(checkpoint, root, trainer.optimizer, trainer.scheduler, ranks)
