"""The learner's configuration: one module per section, importing no implementation code.

`LearnerConfig` (learner.py) holds the sections; `load_learner_config` reads it from a TOML/YAML file,
`GRPO_LEARNER_*` environment variables and CLI overrides. Sections: `reward` (reward.py),
`rollout.environment` (environment.py), `eval` (eval.py), `model.lora` (lora.py), the rest in learner.py.
"""

from grpo_learner.config.learner import (
    ENV_PREFIX,
    AdvantageConfig,
    CheckpointConfig,
    DataConfig,
    DistributedConfig,
    LearnerConfig,
    LocalServicesConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    PushConfig,
    RolloutConfig,
    SamplerCorrectionConfig,
    SamplingConfig,
    TrainConfig,
    load_learner_config,
)

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
    "OptimConfig",
    "PushConfig",
    "RolloutConfig",
    "SamplerCorrectionConfig",
    "SamplingConfig",
    "TrainConfig",
    "load_learner_config",
]
