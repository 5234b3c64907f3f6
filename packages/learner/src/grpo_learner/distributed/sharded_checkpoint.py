"""Checkpoints of the learner on several processes: torch.distributed.checkpoint shards + an HF export.

Layout of `CHECKPOINT_DIR/step-000120/` (the same directory names as one process writes):
  shards/                   torch.distributed.checkpoint (DCP): every rank writes its own shards of
                            the model and AdamW state (no rank ever holds the whole optimizer state)
  rng-rank{R}.json/.safetensors   each rank's python / numpy / torch RNG states
  scheduler.json            the LR scheduler (identical on every rank; written by rank 0)
  model/                    the full model in Hugging Face format, from rank 0: loadable by
                            AutoModelForCausalLM.from_pretrained and servable by SGLang as is
  trainer_state.json        step, policy version, data cursor, world size; written last

Atomic like the one-process checkpoint: every rank writes into `.tmp-step-N`, a barrier makes sure
all shards are on disk, and only then rank 0 completes the directory and renames it into place.
All ranks must see one filesystem (one machine, or a shared mount across nodes).

Resume is exact on the same world size. Another world size is refused with both sizes named
(`checkpoint.check_world_size`): DCP itself could reshard the tensors, but each rank's RNG stream
and batch shard could not continue where they stopped, and "exact" is the promise here. The HF
export in `model/` is the way to carry the weights to a run of another size.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from safetensors.torch import load_file, save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from grpo_learner.distributed.process_group import Ranks
from grpo_learner.training.checkpoint import (
    TrainerState,
    check_world_size,
    checkpoint_path,
    list_checkpoints,
    rng_state,
    set_rng_state,
    write_json,
)

logger = logging.getLogger(__name__)

SHARDS = "shards"


def staging_path(directory: Path, step: int) -> Path:
    return directory / f".tmp-{checkpoint_path(directory, step).name}"


def save_shards(
    directory: Path,
    step: int,
    root: nn.Module,
    optimizer: torch.optim.Optimizer,
    ranks: Ranks,
) -> Path:
    """Collective: every rank writes its model/optimizer shards and its RNG into the staging dir."""
    tmp = staging_path(directory, step)
    if ranks.is_main:
        directory.mkdir(parents=True, exist_ok=True)
        if tmp.exists():  # left over from a crash while writing this step
            shutil.rmtree(tmp)
        tmp.mkdir()
    dist.barrier()
    model_state, optim_state = get_state_dict(root, optimizer)
    dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=tmp / SHARDS)
    rng_json, rng_tensors = rng_state()
    write_json(tmp / f"rng-rank{ranks.rank}.json", rng_json)
    save_file(rng_tensors, tmp / f"rng-rank{ranks.rank}.safetensors")
    dist.barrier()  # every rank's files are on disk before rank 0 may complete the checkpoint
    return tmp


def complete(
    directory: Path,
    state: TrainerState,
    lm: Any,
    full_weights: dict[str, torch.Tensor],
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    tokenizer: Any | None,
    keep_last: int,
    world_size: int,
) -> Path:
    """Rank 0 alone, after save_shards: HF export, scheduler, trainer state, rename, keep_last."""
    tmp = staging_path(directory, state.step)
    lm.save_pretrained(tmp / "model", state_dict=full_weights)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp / "model")
    write_json(tmp / "scheduler.json", scheduler.state_dict())
    write_json(tmp / "trainer_state.json", asdict(replace(state, world_size=world_size)))  # last
    final = checkpoint_path(directory, state.step)
    if final.exists():  # re-saving the same step after a resume: replace it
        shutil.rmtree(final)
    tmp.rename(final)
    for old in list_checkpoints(directory)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    logger.info("checkpoint saved: %s (%d shards)", final, world_size)
    return final


def load_shards(
    path: Path,
    root: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    ranks: Ranks,
) -> TrainerState:
    """Collective: restore this rank's model and optimizer shards, the scheduler and this rank's RNG."""
    state = check_world_size(path, ranks.world_size)
    model_state, optim_state = get_state_dict(root, optimizer)
    dcp.load({"model": model_state, "optim": optim_state}, checkpoint_id=path / SHARDS)
    set_state_dict(root, optimizer, model_state_dict=model_state, optim_state_dict=optim_state)
    scheduler.load_state_dict(json.loads((path / "scheduler.json").read_text()))
    rng = path / f"rng-rank{ranks.rank}"
    set_rng_state(
        json.loads(rng.with_suffix(".json").read_text()), load_file(rng.with_suffix(".safetensors"))
    )
    return state
