"""The rollout service's one typed configuration (file < GRPO_ROLLOUT_* environment < CLI flags)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from grpo_common.addresses import parse_address
from grpo_common.channel import ChannelConfig
from grpo_common.model_reference import check_model_reference
from grpo_common.server import ServerConfig
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from grpo_rollout.service import ServiceLimits

ENV_PREFIX = "GRPO_ROLLOUT_"
DEFAULT_PORT = 50052


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # numbers are finite


class HFSettings(_Strict):
    device: str = Field("cpu", description="torch device for the model: cpu, cuda, cuda:1, ...")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    torch_threads: int | None = Field(None, ge=1, description="intra-op CPU threads (default: torch's)")


class SGLangSettings(_Strict):
    urls: list[str] = Field(
        default_factory=list, description="SGLang worker URLs; weight updates go to each of them"
    )
    router_url: str | None = Field(None, description="SGLang router for /generate (workers get the updates)")
    weight_dir: Path | None = Field(
        None,
        description="where pushed weights are written for update_weights_from_disk; must be readable "
        "by every worker (default: next to the model directory)",
    )
    pause_mode: Literal["abort", "retract", "in_place"] = "abort"
    request_timeout_s: float = Field(600.0, gt=0)
    health_timeout_s: float = Field(900.0, gt=0, description="wait for /health at start-up")
    # Used only when no url is given: launch `python -m sglang.launch_server` as a child.
    tp_size: int = Field(1, ge=1)
    dp_size: int = Field(1, ge=1)
    mem_fraction_static: float = Field(0.7, gt=0, le=1)
    launch_port: int = Field(0, ge=0, le=65535, description="port of the launched server (0 = free)")
    extra_args: list[str] = Field(default_factory=list, description="more sglang.launch_server flags")
    lora_max_rank: int | None = Field(
        None, ge=1, description="LoRA adapter pushes: --enable-lora --max-lora-rank R (>= the learner's r)"
    )
    lora_target_modules: list[str] = Field(
        default_factory=list, description="--lora-target-modules (with lora_max_rank): the learner's targets"
    )

    @model_validator(mode="after")
    def _lora_needs_rank_and_modules(self) -> SGLangSettings:
        """SGLang started without --lora-paths needs both to size its LoRA memory pool."""
        if (self.lora_max_rank is None) != (not self.lora_target_modules):
            raise ValueError(
                "sglang.lora_max_rank and sglang.lora_target_modules go together: SGLang needs both "
                "(--max-lora-rank, --lora-target-modules) to load adapters after start-up"
            )
        return self


class RewardSettings(_Strict):
    address: str = Field(..., description="host:port of the RewardService")

    @field_validator("address")
    @classmethod
    def _host_port(cls, address: str) -> str:
        return parse_address(address)

    timeout_s: float = Field(30.0, gt=0, description="deadline of one Score attempt")
    attempts: int = Field(3, ge=1, le=10)
    backoff_s: float = Field(0.5, ge=0)
    max_batch_items: int = Field(512, ge=1, description="items per Score call; larger batches are split")
    channel: ChannelConfig = Field(default_factory=ChannelConfig)


class LimitSettings(_Strict):
    max_in_flight_prompts: int = Field(4096, ge=1)
    max_prompts_per_request: int = Field(4096, ge=1)
    max_group_size: int = Field(512, ge=2)
    batch_prompts: int | None = Field(
        None, ge=1, description="prompts per generate call (unset: sglang 1, hf batch_sequences // G)"
    )
    batch_sequences: int = Field(
        256,
        ge=1,
        description="hf, batch_prompts unset: rows (prompts x group size) per generate call; one call of "
        "256 rows costs about what one of 64 does on a small model, whose decode step is overhead",
    )
    max_concurrent_batches: int | None = Field(None, ge=1, description="hf 1, sglang 256")
    batches_ahead: int = Field(2, ge=1)
    stream_buffer_groups: int = Field(8, ge=1)
    max_update_bytes: int | None = Field(None, ge=1)
    distributed_update_idle_s: float = Field(
        600.0, gt=0, description="an open NCCL weight update whose next bucket does not come is abandoned"
    )

    def for_backend(self, backend: str) -> ServiceLimits:
        """SGLang batches continuously, so it gets one prompt per call and many calls at once."""
        sglang = backend == "sglang"
        return ServiceLimits(
            max_in_flight_prompts=self.max_in_flight_prompts,
            max_prompts_per_request=self.max_prompts_per_request,
            max_group_size=self.max_group_size,
            batch_prompts=self.batch_prompts or (1 if sglang else None),
            batch_sequences=self.batch_sequences,
            max_concurrent_batches=self.max_concurrent_batches or (256 if sglang else 1),
            batches_ahead=self.batches_ahead if not sglang else max(self.batches_ahead, 64),
            stream_buffer_groups=self.stream_buffer_groups,
            max_update_bytes=self.max_update_bytes,
            distributed_update_idle_s=self.distributed_update_idle_s,
        )


class RolloutServiceConfig(_Strict):
    model: str = Field(..., description="Hugging Face checkpoint directory (or cached hub id for hf)")

    @field_validator("model")
    @classmethod
    def _a_model(cls, model: str) -> str:
        return check_model_reference(model)

    generator: Literal["hf", "sglang"] = "hf"
    server: ServerConfig = Field(default_factory=lambda: ServerConfig(port=DEFAULT_PORT))
    reward: RewardSettings
    hf: HFSettings = Field(default_factory=HFSettings)
    sglang: SGLangSettings = Field(default_factory=SGLangSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    plugins: list[str] = Field(
        default_factory=list,
        description="environment plugins loaded at start-up: module:attr (registered under that name) "
        "or a module whose @ENVIRONMENTS.register calls add environments",
    )
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _one_token_both_directions(self) -> RolloutServiceConfig:
        """The token this service requires is the one it sends to the reward service, unless told otherwise.

        A deployment shares one token (README: "Each service alone"); without this, `--auth-token` on
        `grpo-rollout serve` protected the service while its own Score calls went out without one.
        """
        if self.reward.channel.auth_token is None and self.server.auth_token is not None:
            self.reward.channel.auth_token = self.server.auth_token
        return self

    @model_validator(mode="after")
    def _sglang_router_needs_workers(self) -> RolloutServiceConfig:
        if self.sglang.router_url and not self.sglang.urls:
            raise ValueError(
                "sglang.router_url needs sglang.urls too: weight updates go to each worker, never the router"
            )
        return self


RolloutConfig = RolloutServiceConfig  # the old name (the learner's [rollout] section is also RolloutConfig)
