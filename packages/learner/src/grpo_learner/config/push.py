"""`[push]` (+ `[push.nccl]`): how new weights reach the rollout services.

`transport` and `lora_mode` are names in registries (`PUSH_TRANSPORTS` in weight_sync/transports.py,
`LORA_SELECTIONS` in weight_sync/push_selection.py), plain strings here so the config imports no
torch; `grpo_learner.training.registered_names` checks them before anything is built. A transport's own
options are a section of their own (`[push.nccl]`), as the rollout service nests `[hf]`/`[sglang]`.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from grpo_common.config import ConfigSection
from grpo_common.weights.wire import DEFAULT_BUCKET_BYTES
from pydantic import Field, model_validator

logger = logging.getLogger(__name__)

# The flat `push.nccl_*` keys before `[push.nccl]`: read until 0.2 with a deprecation message.
_FLAT_NCCL_PREFIX = "nccl_"


class NcclPushConfig(ConfigSection):
    """`[push.nccl]`: the NCCL broadcast into the SGLang engines' weight-update group (nccl_sync.py)."""

    master_address: str | None = Field(
        None, description="this learner's address as the SGLang engines reach it (it hosts the TCP store)"
    )
    master_port: int = Field(0, ge=0, le=65535, description="TCP store port; 0: a free port")
    group_name: str = Field("weight_update_group", min_length=1)
    backend: Literal["nccl", "gloo"] = Field("nccl", description="gloo: CPU tensors (tests only)")
    bucket_bytes: int = Field(1 << 30, ge=1024, description="bytes per broadcast bucket (0.5-2 GB)")
    timeout_s: float = Field(600.0, gt=0, description="rendezvous, broadcast and RPC deadline")


class PushConfig(ConfigSection):
    every: int = Field(1, ge=1, description="push weights every k steps")
    deadline_s: float = Field(
        120.0, gt=0, description="longest a push may hold up training, plus its bytes / min_mb_per_s"
    )
    # The push deadline scales with what is sent: a 0.5B fp32 model (1.98 GB) moves at 100-400 MB/s
    # over loopback on 2 busy cores, a 7B one is 28 GB; a fixed 120 s would cut (and retry forever)
    # every push of a big model. At 25 MB/s a 0.5B push gets 120 + 79 s, a 7B one 120 + 1120 s.
    min_mb_per_s: float = Field(
        25.0, gt=0, description="slowest transfer a push waits for: its deadline grows by MB / this"
    )
    bucket_bytes: int = Field(DEFAULT_BUCKET_BYTES, ge=1024, description="weight-stream bucket size")
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(None, description="None: as trained")
    delta: bool = Field(
        False,
        description="grpc: send a service that holds the previous version only what changed (most tensors "
        "as small XOR payloads); anyone else, and on any doubt, every tensor whole",
    )
    transport: str = Field(
        "grpc", description="a registered push transport (weight_sync/transports.py; `grpo train --help`)"
    )
    nccl: NcclPushConfig = Field(default_factory=NcclPushConfig)
    lora_mode: str = Field(
        "merged",
        description="a LoRA policy's registered push mode (weight_sync/push_selection.py; "
        "`grpo train --help`): merged targeted tensors, or the adapter itself (sglang, grpc only)",
    )

    @model_validator(mode="before")
    @classmethod
    def _flat_nccl_keys(cls, values: Any) -> Any:
        """`push.nccl_master_address` (before `[push.nccl]`) is read as `push.nccl.master_address`.

        Both spellings of one option at once must agree; the old one is accepted until 0.2.
        """
        if not isinstance(values, dict):
            return values
        flat = {key: value for key, value in values.items() if key.startswith(_FLAT_NCCL_PREFIX)}
        if not flat:
            return values
        nested = dict(values.get("nccl") or {})
        for key, value in flat.items():
            option = key.removeprefix(_FLAT_NCCL_PREFIX)
            if option in nested and nested[option] != value:
                raise ValueError(
                    f"push.{key} and push.nccl.{option} disagree; push.{key} is the old name: keep only "
                    f"push.nccl.{option}"
                )
            nested[option] = value
        logger.warning(
            "push.%s are deprecated and will be refused in 0.2: write them as push.nccl.%s ([push.nccl])",
            ", push.".join(sorted(flat)),
            ", push.nccl.".join(key.removeprefix(_FLAT_NCCL_PREFIX) for key in sorted(flat)),
        )
        rest = {key: value for key, value in values.items() if key not in flat}
        return {**rest, "nccl": nested}

    @model_validator(mode="after")
    def _nccl_needs_an_address(self) -> PushConfig:
        if self.transport == "nccl" and not self.nccl.master_address:
            raise ValueError(
                "push.transport = 'nccl' needs push.nccl.master_address: the learner's address as the "
                "SGLang engines reach it"
            )
        if self.transport == "nccl" and self.lora_mode == "adapter":
            raise ValueError(
                "push.lora_mode = 'adapter' needs push.transport = 'grpc': the NCCL group carries model "
                "weights only"
            )
        return self
