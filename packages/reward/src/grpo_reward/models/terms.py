"""The operator's reward models and judges, started when the service starts (before it binds)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from grpo_reward.models.config import JudgeConfig, RewardModelConfig
from grpo_reward.tasks.batched import BatchTask

logger = logging.getLogger(__name__)


def start_terms(reward_models: Sequence[RewardModelConfig], judges: Sequence[JudgeConfig]) -> list[BatchTask]:
    """A started BatchTask per configured name; ModelStartError (nothing left running) when one fails."""
    names = [c.name for c in (*reward_models, *judges)]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"reward models and judges need distinct names; repeated: {repeated}")
    from grpo_reward.models.judge import Judge
    from grpo_reward.models.reward_model import RewardModel

    started: list[BatchTask] = []
    try:
        for config in reward_models:
            started.append(RewardModel(config))
        started.extend(Judge(config) for config in judges)
    except BaseException:
        for task in started:
            task.close()
        raise
    return started
