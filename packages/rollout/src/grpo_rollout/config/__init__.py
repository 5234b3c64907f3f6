"""The rollout service's configuration: one module per section, importing no torch.

`RolloutServiceConfig` (service.py) holds the sections: `[reward]` (reward.py), `[limits]` (limits.py),
and each generator backend's own, kept with its backend (`backends/<name>/config.py`).
"""

from grpo_rollout.backends.hf.config import HFConfig
from grpo_rollout.backends.sglang.config import SGLangConfig
from grpo_rollout.config.limits import LimitSettings, ServiceLimits
from grpo_rollout.config.reward import RewardSettings
from grpo_rollout.config.service import DEFAULT_PORT, ENV_PREFIX, RolloutServiceConfig

HFSettings, SGLangSettings = HFConfig, SGLangConfig  # the old names
RolloutConfig = RolloutServiceConfig  # the old name (the learner's [rollout] section is also RolloutConfig)

__all__ = [
    "DEFAULT_PORT",
    "ENV_PREFIX",
    "HFConfig",
    "HFSettings",
    "LimitSettings",
    "RewardSettings",
    "RolloutConfig",
    "RolloutServiceConfig",
    "SGLangConfig",
    "SGLangSettings",
    "ServiceLimits",
]
