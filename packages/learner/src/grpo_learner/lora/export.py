"""`grpo export CHECKPOINT OUT [--merge]`: a checkpoint's model as a directory of its own.

A LoRA checkpoint's `model/` holds only the adapters (peft's format) on top of the run's base
model. `--merge` folds them in (`merge.merged_state_dict`, the very weights the rollout services
were pushed) and writes an ordinary Hugging Face model that `AutoModelForCausalLM.from_pretrained`
loads and `grpo eval` / SGLang serve. Without `--merge` the checkpoint's model directory (the
adapters, or the full model of a full fine-tuning run) is copied as it is.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch
from grpo_common.hf_tokenizer import load_tokenizer
from peft import PeftModel
from transformers import AutoModelForCausalLM

from grpo_learner.lora.adapters import ADAPTER_CONFIG, is_adapter_dir
from grpo_learner.lora.merge import merged_state_dict

logger = logging.getLogger(__name__)


def model_dir_of(checkpoint: Path) -> Path:
    """`CHECKPOINT/model` (a step-N directory given) or the model directory itself."""
    inner = checkpoint / "model"
    found = inner if inner.is_dir() else checkpoint
    if not (is_adapter_dir(found) or (found / "config.json").is_file()):
        raise FileNotFoundError(
            f"{checkpoint}: no model here; give a checkpoint (RUN_DIR/checkpoints/step-N) or its model/"
        )
    return found


def export_checkpoint(
    checkpoint: Path, out: Path, *, merge: bool, base: str | None = None, trust_remote_code: bool = False
) -> Path:
    """Write the checkpoint's model to `out` (merged with --merge); returns `out`."""
    source = model_dir_of(checkpoint)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty: name a new directory")
    if not merge:
        shutil.copytree(source, out, dirs_exist_ok=True)
        return out
    if not is_adapter_dir(source):
        raise ValueError(
            f"{source} is a full fine-tuning checkpoint: nothing to merge; it loads as it is, "
            "or export it without --merge"
        )
    base = base or json.loads((source / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]
    if not base:
        raise ValueError(f"{source / ADAPTER_CONFIG} names no base model: give --base MODEL")
    try:
        model = AutoModelForCausalLM.from_pretrained(
            base, dtype=torch.float32, trust_remote_code=trust_remote_code
        )
    except OSError as exc:
        raise FileNotFoundError(
            f"the base model {base!r} of {source} could not be loaded ({exc}); give --base MODEL"
        ) from None
    lora = PeftModel.from_pretrained(model, str(source))
    merged = merged_state_dict(lora)
    plain = lora.unload()  # the base model again, its linear layers unwrapped
    plain.load_state_dict(merged)
    plain.save_pretrained(out)
    if (source / "tokenizer_config.json").is_file():
        load_tokenizer(str(source), trust_remote_code=trust_remote_code).save_pretrained(out)
    logger.info("merged %s (base %s) into %s", source, base, out)
    return out
