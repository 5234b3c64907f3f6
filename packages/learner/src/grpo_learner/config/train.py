"""`[train]`, `[checkpoint]`, `[distributed]`: the training run itself."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from grpo_common.config import ConfigSection
from pydantic import Field


class TrainConfig(ConfigSection):
    max_steps: int = Field(100, ge=1)
    micro_batch_size: int = Field(8, ge=1, description="sequences per forward/backward")
    seed: int = 0
    dynamic_sampling: bool = Field(False, description="DAPO: drop zero-variance groups and refill")
    max_refill_rounds: int = Field(3, ge=0, description="extra requests per step to fill a short batch")
    logprob_chunk_tokens: int = Field(4096, ge=1, description="most tokens per lm_head chunk")
    # A chunk's fp32 logits are tokens x vocab x 4 B, and its forward / backward hold ~3 such tensors:
    # at Qwen's 151,936 entries 64 MiB is 110 tokens (~200 MiB transient). Smaller chunks cost time:
    # each one's backward also writes a vocab x hidden lm_head gradient (at 100M params 55-token
    # chunks were ~1.3x slower than 128-token ones, measured under load). A 40-token character
    # vocabulary fits 400k tokens in it (one chunk, as before).
    logprob_chunk_mib: float = Field(
        64.0, gt=0, description="most MiB of fp32 logits (tokens x vocab x 4 B) per lm_head chunk"
    )
    share_prompt_forward: bool = Field(
        True,
        description="run each group's prompt through the model once and attend to its KV from all G "
        "completions (off: one pass per sequence; gradient checkpointing always uses one pass)",
    )
    packing: bool | Literal["auto"] = Field(
        "auto",
        description="pack each micro-batch's groups end to end in rows (no padding between uneven "
        "completions; a group's prompt still computed once), exact against the padded layout; auto: "
        "a step packs only when that computes less than padded (attention over a row is dense)",
    )
    packing_row_tokens: int = Field(
        1024,
        ge=1,
        description="most tokens per packed row: attention is dense over a row without a varlen kernel "
        "(L^2 scores per head and layer), so this bounds its cost; a longer group gets a row of its own",
    )
    device: str = Field("auto", description="auto: cuda if available, else cpu")
    autocast: Literal["auto", "bfloat16", "none"] = Field(
        "auto",
        description="forward/backward compute dtype over fp32 master weights; auto: bfloat16 on cuda, "
        "none (fp32) on cpu; bfloat16 on cpu runs the dtype GPU runs use (slower than fp32 on most CPUs)",
    )
    torch_threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads of the learner's torch ops (None: torch's default, one per core); cap it "
        "when rollout or reward processes share the cores, or their threads and ours contend",
    )


class CheckpointConfig(ConfigSection):
    dir: Path | None = Field(None, description="default: RUN_DIR/checkpoints")
    interval: int = Field(50, ge=1, description="steps between checkpoints")
    keep_last: int = Field(2, ge=1)
    resume: bool = Field(
        False, description="continue from the latest checkpoint in dir (grpo train --resume)"
    )


class DistributedConfig(ConfigSection):
    """The learner on several processes (torchrun / `grpo train --nproc N`); ignored in one process."""

    timeout_s: float = Field(
        600.0,
        gt=0,
        description="longest wait in one collective before a rank gives up: a dead or hung rank "
        "fails the job after at most this long (rank 0 keeps idle ranks alive while it waits for "
        "rollouts, so generation time does not count)",
    )
