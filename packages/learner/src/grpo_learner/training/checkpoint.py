"""Checkpoints: everything needed to resume exactly, written atomically, the last K kept.

Layout of `CHECKPOINT_DIR/step-000120/`:
  model/                    save_pretrained (safetensors + config) and the tokenizer: loadable by
                            AutoModelForCausalLM.from_pretrained, and servable by SGLang as is;
                            with [model.lora] peft's adapters only (adapter_config.json +
                            adapter_model.safetensors), resumed on the run's base model
                            (`grpo export --merge` writes the merged model)
  optimizer.safetensors     every optimizer state tensor (AdamW moments, step counts)
  optimizer.json            param groups and non-tensor state
  scheduler.json            the LR scheduler's state_dict
  rng.json, rng.safetensors python / numpy / torch (CPU and CUDA) generator states
  trainer_state.json        step, policy version, dataset cursor, anything the loop adds

No pickle anywhere. The directory is written under a temporary name and renamed into place, so a
crash mid-write leaves no half checkpoint that `latest_checkpoint` could pick up.

A learner on several processes writes a different layout (torch.distributed.checkpoint shards,
see `distributed/sharded_checkpoint.py`) into the same `step-N` directories; `trainer_state.json`
records the world size, and `check_world_size` refuses to resume a checkpoint with another number
of processes.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

logger = logging.getLogger(__name__)

STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass
class TrainerState:
    step: int  # training steps completed
    policy_version: int
    data: dict[str, Any] = field(default_factory=dict)  # the prompt feed's cursor
    extra: dict[str, Any] = field(default_factory=dict)
    world_size: int = 1  # learner processes that wrote the checkpoint (older checkpoints: 1)


class CheckpointMismatch(ValueError):
    """A checkpoint that this run cannot resume (written by another number of processes)."""


def read_trainer_state(path: Path) -> TrainerState:
    return TrainerState(**json.loads((path / "trainer_state.json").read_text()))


def check_world_size(path: Path, world_size: int) -> TrainerState:
    """The checkpoint's TrainerState; CheckpointMismatch if it was written by another world size."""
    state = read_trainer_state(path)
    if state.world_size != world_size:
        raise CheckpointMismatch(
            f"checkpoint {path} was written by {state.world_size} learner process(es) but this run has "
            f"{world_size}: resume with the same number (grpo train --nproc {state.world_size}), or start a "
            f"new run (another run_dir, or checkpoint.resume=false) from its Hugging Face export with "
            f"--model {path / 'model'} (optimizer state and data cursor then start afresh)"
        )
    return state


def checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"step-{step:06d}"


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary directories never match `step-N`)."""
    if not directory.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in directory.iterdir() if p.is_dir() and (m := STEP_DIR.match(p.name))
    ]
    return [p for _, p in sorted(found) if (p / "trainer_state.json").is_file()]


def latest_checkpoint(directory: Path) -> Path | None:
    checkpoints = list_checkpoints(directory)
    return checkpoints[-1] if checkpoints else None


def save_checkpoint(
    directory: Path,
    state: TrainerState,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    tokenizer: Any | None = None,
    keep_last: int = 2,
) -> Path:
    """Write the checkpoint for `state.step` atomically and delete all but the newest `keep_last`."""
    directory.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(directory, state.step)
    tmp = directory / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    model.save_pretrained(tmp / "model")
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp / "model")
    tensors, meta = _flatten_optimizer(optimizer.state_dict())
    save_file(tensors, tmp / "optimizer.safetensors")
    write_json(tmp / "optimizer.json", meta)
    write_json(tmp / "scheduler.json", scheduler.state_dict())
    rng_json, rng_tensors = rng_state()
    write_json(tmp / "rng.json", rng_json)
    save_file(rng_tensors, tmp / "rng.safetensors")
    write_json(tmp / "trainer_state.json", asdict(state))  # last: marks the checkpoint complete
    if final.exists():  # re-saving the same step (after a resume): replace it
        shutil.rmtree(final)
    tmp.rename(final)
    for old in list_checkpoints(directory)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    logger.info("checkpoint saved: %s", final)
    return final


def load_training_state(
    path: Path,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    restore_rng: bool = True,
) -> TrainerState:
    """Restore optimizer, scheduler and RNGs from `path`; the model is loaded from `path / "model"`."""
    meta = json.loads((path / "optimizer.json").read_text())
    optimizer.load_state_dict(_unflatten_optimizer(load_file(path / "optimizer.safetensors"), meta))
    scheduler.load_state_dict(json.loads((path / "scheduler.json").read_text()))
    if restore_rng:
        set_rng_state(json.loads((path / "rng.json").read_text()), load_file(path / "rng.safetensors"))
    return read_trainer_state(path)


# --- optimizer state without pickle -------------------------------------------------------------


def _flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, param_state in state_dict["state"].items():
        for key, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    meta = {
        "param_groups": state_dict["param_groups"],
        "scalars": scalars,
        "indices": list(state_dict["state"]),
    }
    return tensors, meta


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {
        int(i): dict(meta["scalars"].get(str(i), {})) for i in meta["indices"]
    }
    for name, tensor in tensors.items():
        index, key = name.split(".", 1)
        state[int(index)][key] = tensor
    return {"state": state, "param_groups": meta["param_groups"]}


# --- random number generators -------------------------------------------------------------------


def rng_state() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for device, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{device}"] = state
    json_state = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
    }
    return json_state, tensors


def set_rng_state(json_state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    version, internal, gauss = json_state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = json_state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda.{d}"] for d in range(len(tensors)) if f"cuda.{d}" in tensors]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1))
