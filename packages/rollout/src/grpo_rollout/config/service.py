"""The rollout service's one typed configuration (file < GRPO_ROLLOUT_* environment < CLI flags).

Its sections: `[reward]` (reward.py), `[limits]` (limits.py), and each backend's own (`[hf]`, `[sglang]`:
`grpo_rollout/backends/<name>/config.py`).
"""

from __future__ import annotations

from grpo_common.config import ConfigSection
from grpo_common.model_reference import check_model_reference
from grpo_common.sandbox.slots import SandboxSlotsConfig
from grpo_common.server import ServerConfig
from pydantic import Field, field_validator, model_validator

from grpo_rollout.backends.hf.config import HFConfig
from grpo_rollout.backends.registry import GENERATORS
from grpo_rollout.backends.sglang.config import SGLangConfig
from grpo_rollout.config.limits import LimitSettings
from grpo_rollout.config.reward import RewardSettings

ENV_PREFIX = "GRPO_ROLLOUT_"
DEFAULT_PORT = 50052


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
