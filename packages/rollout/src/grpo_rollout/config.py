"""The rollout service's one typed configuration (file < GRPO_ROLLOUT_* environment < CLI flags)."""

from __future__ import annotations

from dataclasses import dataclass

from grpo_common.addresses import parse_address
from grpo_common.channel import ChannelConfig
from grpo_common.config import ConfigSection
from grpo_common.model_reference import check_model_reference
from grpo_common.sandbox.slots import SandboxSlotsConfig
from grpo_common.server import ServerConfig
from pydantic import Field, field_validator, model_validator

from grpo_rollout.backends.hf.config import HFConfig
from grpo_rollout.backends.registry import GENERATORS
from grpo_rollout.backends.sglang.config import SGLangConfig

ENV_PREFIX = "GRPO_ROLLOUT_"
DEFAULT_PORT = 50052


class RewardSettings(ConfigSection):
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


@dataclass(frozen=True)
class ServiceLimits:
    """The limits one servicer enforces, resolved for its backend by `LimitSettings.for_backend`
    (the defaults live in `LimitSettings` and the backend's `BackendLimits`, nowhere else)."""

    max_in_flight_prompts: int  # accepted and not yet streamed; beyond -> RESOURCE_EXHAUSTED
    max_prompts_per_request: int
    max_group_size: int
    batch_prompts: int | None  # prompts per generate call (None: batch_sequences // group size)
    batch_sequences: int  # rows per generate call when batch_prompts is None
    max_concurrent_batches: int  # generate calls running at once, service-wide
    batches_ahead: int  # per request: batches generated ahead of a slow reader
    stream_buffer_groups: int  # scored groups waiting for the reader
    max_update_bytes: int | None  # largest weight update accepted
    distributed_update_idle_s: float  # an open NCCL update with no next bucket is abandoned


class LimitSettings(ConfigSection):
    max_in_flight_prompts: int = Field(4096, ge=1)
    max_prompts_per_request: int = Field(4096, ge=1)
    max_group_size: int = Field(512, ge=2)
    batch_prompts: int | None = Field(
        None,
        ge=1,
        description="prompts per generate call (unset: the backend's; hf: batch_sequences // G)",
    )
    batch_sequences: int = Field(
        256,
        ge=1,
        description="hf, batch_prompts unset: rows (prompts x group size) per generate call; one call of "
        "256 rows costs about what one of 64 does on a small model, whose decode step is overhead",
    )
    max_concurrent_batches: int | None = Field(None, ge=1, description="unset: the backend's default")
    batches_ahead: int = Field(2, ge=1)
    stream_buffer_groups: int = Field(8, ge=1)
    max_update_bytes: int | None = Field(None, ge=1)
    distributed_update_idle_s: float = Field(
        600.0, gt=0, description="an open NCCL weight update whose next bucket does not come is abandoned"
    )

    def for_backend(self, backend: str) -> ServiceLimits:
        """These limits, with what is unset taken from the backend's own defaults (`GENERATORS`)."""
        wanted = GENERATORS[backend].limits
        return ServiceLimits(
            max_in_flight_prompts=self.max_in_flight_prompts,
            max_prompts_per_request=self.max_prompts_per_request,
            max_group_size=self.max_group_size,
            batch_prompts=self.batch_prompts or wanted.batch_prompts,
            batch_sequences=self.batch_sequences,
            max_concurrent_batches=self.max_concurrent_batches or wanted.max_concurrent_batches,
            batches_ahead=max(self.batches_ahead, wanted.min_batches_ahead),
            stream_buffer_groups=self.stream_buffer_groups,
            max_update_bytes=self.max_update_bytes,
            distributed_update_idle_s=self.distributed_update_idle_s,
        )


class RolloutServiceConfig(ConfigSection):
    model: str = Field(..., description="Hugging Face checkpoint directory (or cached hub id for hf)")

    @field_validator("model")
    @classmethod
    def _a_model(cls, model: str) -> str:
        return check_model_reference(model)

    generator: str = Field("hf", description="generation backend, a name in GENERATORS (backends/)")

    @field_validator("generator")
    @classmethod
    def _a_backend(cls, name: str) -> str:
        GENERATORS.get_item(name)  # UnknownName (a ValueError) lists the registered backends
        return name

    server: ServerConfig = Field(default_factory=lambda: ServerConfig(port=DEFAULT_PORT))
    reward: RewardSettings
    hf: HFConfig = Field(default_factory=HFConfig)
    sglang: SGLangConfig = Field(default_factory=SGLangConfig)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    sandbox: SandboxSlotsConfig = Field(default_factory=SandboxSlotsConfig)
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


HFSettings, SGLangSettings = HFConfig, SGLangConfig  # the old names
RolloutConfig = RolloutServiceConfig  # the old name (the learner's [rollout] section is also RolloutConfig)
