"""The learner's one typed configuration, validated in full before any model is loaded.

`LearnerConfig` holds one section per module of this package (`model`, `data`, `reward`, `rollout`,
`optim`, `loss`, `train` + `checkpoint` + `distributed`, `push`, `local_services`, `eval`) and the
checks that span sections. Load it with `load_learner_config` (TOML/YAML file < `GRPO_LEARNER_*`
environment < CLI overrides). A bad value fails here with the field named; a registry name (a loss,
an estimator, a push transport) is checked by `grpo_learner.training.registered_names` before anything is
built, e.g. `loss.loss_type: unknown loss 'ppo'; registered: bnpo, cispo, ...` (read from `LOSSES`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from grpo_common.config import ConfigSection, load_config
from grpo_common.reward_terms import CORRECTNESS
from pydantic import Field, model_validator

from grpo_learner.config.data import DataConfig
from grpo_learner.config.eval import EvalConfig
from grpo_learner.config.local_services import LocalServicesConfig
from grpo_learner.config.loss import LossConfig
from grpo_learner.config.model import ModelConfig
from grpo_learner.config.optim import OptimConfig
from grpo_learner.config.push import PushConfig
from grpo_learner.config.reward import RewardConfig
from grpo_learner.config.rollout import RolloutConfig
from grpo_learner.config.train import CheckpointConfig, DistributedConfig, TrainConfig

ENV_PREFIX = "GRPO_LEARNER_"

logger = logging.getLogger(__name__)


class LearnerConfig(ConfigSection):
    model: ModelConfig
    data: DataConfig = Field(default_factory=DataConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    push: PushConfig = Field(default_factory=PushConfig)
    local_services: LocalServicesConfig = Field(default_factory=LocalServicesConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    run_dir: Path = Path("runs/default")
    tensorboard: bool = True

    @model_validator(mode="before")
    @classmethod
    def _data_task_moved(cls, values: Any) -> Any:
        """`data.task` (before [reward] existed) is read as `reward.task`; both at once must agree."""
        if not isinstance(values, dict) or not isinstance(values.get("data"), dict):
            return values
        if "task" not in values["data"]:
            return values
        data = dict(values["data"])
        task = data.pop("task")
        reward = dict(values.get("reward") or {})
        if "task" in reward and reward["task"] != task:
            raise ValueError(
                f"data.task {task!r} and reward.task {reward['task']!r} disagree; data.task is the old "
                "name of reward.task: keep only reward.task"
            )
        logger.warning("data.task is now reward.task; reading data.task = %r as reward.task", task)
        reward["task"] = task
        return {**values, "data": data, "reward": reward}

    @model_validator(mode="after")
    def _rewards_weighed_exist(self) -> LearnerConfig:
        """Every name in loss.advantage.reward_weights must be computed: `reward` or a [reward] component.

        With combine = normalize_then_sum and no reward_weights, the [reward] components' weights are
        the advantage weights (each component normalised alone), so the weights are given once.
        """
        advantage = self.loss.advantage
        computed = set(self.reward.component_weights()) or {CORRECTNESS}
        unknown = sorted(set(advantage.reward_weights) - computed - {"reward"})
        if unknown:
            raise ValueError(
                f"loss.advantage.reward_weights names {unknown}, which the reward service is not asked "
                f"to compute; add them to reward.components (computed now: {sorted(computed)}, plus "
                "'reward', the weighted sum)"
            )
        if advantage.combine == "normalize_then_sum" and not advantage.reward_weights:
            advantage.reward_weights = self.reward.component_weights()
        return self

    @model_validator(mode="after")
    def _consistent(self) -> LearnerConfig:
        lag = self.push.every - 1
        if lag > self.rollout.max_staleness:
            raise ValueError(
                f"push.every={self.push.every} lets rollouts lag {lag} versions behind, beyond "
                f"rollout.max_staleness={self.rollout.max_staleness}; raise max_staleness to >= {lag}"
            )
        if self.rollout.partial and self.rollout.max_staleness < 1:
            raise ValueError(
                "rollout.partial needs rollout.max_staleness >= 1: a completion continued under the "
                "next version has tokens one version older than its newest; raise max_staleness or "
                "turn partial off"
            )
        weights = self.loss.advantage.reward_weights
        if weights and not any(w != 0 for w in weights.values()):
            raise ValueError("loss.advantage.reward_weights: every weight is 0, no reward would be learnt")
        if self.push.transport == "nccl" and self.rollout.addresses_file is not None:
            raise ValueError(
                "rollout.addresses_file cannot be used with push.transport='nccl': the NCCL group is "
                "formed once over rollout.addresses; list the services there, or use push.transport='grpc'"
            )
        return self

    @property
    def checkpoint_dir(self) -> Path:
        return self.checkpoint.dir or self.run_dir / "checkpoints"


def load_learner_config(
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> LearnerConfig:
    """File < GRPO_LEARNER_* environment < dotted `overrides` ({"loss.beta": 0.04}); ConfigError if bad."""
    return load_config(
        LearnerConfig, config_file=config_file, env_prefix=ENV_PREFIX, overrides=overrides, environ=environ
    )
