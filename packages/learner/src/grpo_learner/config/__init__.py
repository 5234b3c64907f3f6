"""The learner's configuration: one module per section, importing no implementation code.

`LearnerConfig` (learner.py) holds the sections; `load_learner_config` reads it from a TOML/YAML file,
`GRPO_LEARNER_*` environment variables and CLI overrides. One module per section: model (+ lora),
data, reward, rollout (+ environment), optim, loss, train (+ checkpoint, distributed), push,
local_services, eval.
"""

from grpo_learner.config.data import DataConfig
from grpo_learner.config.learner import ENV_PREFIX, LearnerConfig, load_learner_config
from grpo_learner.config.local_services import LocalServicesConfig
from grpo_learner.config.loss import AdvantageConfig, LossConfig, SamplerCorrectionConfig
from grpo_learner.config.model import ModelConfig
from grpo_learner.config.optim import OptimConfig
from grpo_learner.config.push import NcclPushConfig, PushConfig
from grpo_learner.config.rollout import RolloutConfig, SamplingConfig
from grpo_learner.config.train import CheckpointConfig, DistributedConfig, TrainConfig

__all__ = [
    "ENV_PREFIX",
    "AdvantageConfig",
    "CheckpointConfig",
    "DataConfig",
    "DistributedConfig",
    "LearnerConfig",
    "LocalServicesConfig",
    "LossConfig",
    "ModelConfig",
    "NcclPushConfig",
    "OptimConfig",
    "PushConfig",
    "RolloutConfig",
    "SamplerCorrectionConfig",
    "SamplingConfig",
    "TrainConfig",
    "load_learner_config",
]
