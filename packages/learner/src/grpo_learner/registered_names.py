"""Every registry name a `LearnerConfig` holds, checked against its registry before anything is built.

The config is plain data and imports no torch (`grpo_learner.config`); the registries live beside
their implementations (losses.py, advantages.py, weight_sync/), so the names are checked here, once the
config has loaded and before a model is: `grpo train` fails at once with the field and the registered
names (`loss.loss_type: unknown loss 'ppo'; registered: bnpo, ...`). `REGISTRY_FIELDS` is also what
`grpo train --help` lists, read from the registries themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any

from grpo_common.config import ConfigError
from grpo_common.registry import Registry, UnknownName

from grpo_learner.config import LearnerConfig


def _losses() -> Registry[Any]:
    from grpo_learner.losses import LOSSES  # torch: imported when a name is checked or listed

    return LOSSES


def _sampler_weight_levels() -> Registry[Any]:
    from grpo_learner.losses import SAMPLER_WEIGHT_LEVELS

    return SAMPLER_WEIGHT_LEVELS


def _advantage_estimators() -> Registry[Any]:
    from grpo_learner.advantages import ADVANTAGE_ESTIMATORS

    return ADVANTAGE_ESTIMATORS


def _combine_modes() -> Registry[Any]:
    from grpo_learner.advantages import COMBINE_MODES

    return COMBINE_MODES


def _push_transports() -> Registry[Any]:
    from grpo_learner.weight_sync.transports import PUSH_TRANSPORTS

    return PUSH_TRANSPORTS


def _lora_modes() -> Registry[Any]:
    from grpo_learner.weight_sync.push_selection import LORA_SELECTIONS

    return LORA_SELECTIONS


# The config field (dotted) -> the registry its value names.
REGISTRY_FIELDS: dict[str, Callable[[], Registry[Any]]] = {
    "loss.loss_type": _losses,
    "loss.advantage.scaling": _advantage_estimators,
    "loss.advantage.combine": _combine_modes,
    "loss.sampler_correction.level": _sampler_weight_levels,
    "push.transport": _push_transports,
    "push.lora_mode": _lora_modes,
}


def check_registered_names(config: LearnerConfig) -> None:
    """ConfigError naming the first field whose value no registry knows, and what is registered."""
    for field, registry in REGISTRY_FIELDS.items():
        try:
            registry().get_item(attrgetter(field)(config))
        except UnknownName as error:
            raise ConfigError(f"{field}: {error}") from None


def registered_names_help() -> str:
    """One line per registry field, its registered names: `loss.loss_type: bnpo, cispo, ...`."""
    return "\n".join(
        f"  {field}: {', '.join(sorted(registry()))}" for field, registry in REGISTRY_FIELDS.items()
    )
