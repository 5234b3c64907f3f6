"""Every registry name a `LearnerConfig` holds, checked against its registry before anything is built.

The config is plain data and imports no torch (`grpo_learner.config`); the registries live beside
their implementations (losses.py, advantages.py, weight_sync/), so the names are checked here, once the
config has loaded and before a model is: `grpo train` fails at once with the field and the registered
names (`loss.loss_type: unknown loss 'ppo'; registered: bnpo, ...`). `REGISTRY_FIELDS` is also what
`grpo train --help` lists, read from the registries themselves.
"""

from __future__ import annotations

import importlib
from operator import attrgetter
from typing import Any

from grpo_common.config import ConfigError
from grpo_common.registry import Registry, UnknownName

from grpo_learner.config import LearnerConfig

# The config field (dotted) -> the module and name of the registry its value names. The modules import
# torch, so they are imported only when a name is checked or listed.
REGISTRY_FIELDS: dict[str, tuple[str, str]] = {
    "loss.loss_type": ("grpo_learner.grpo.losses", "LOSSES"),
    "loss.advantage.scaling": ("grpo_learner.grpo.advantages", "ADVANTAGE_ESTIMATORS"),
    "loss.advantage.combine": ("grpo_learner.grpo.advantages", "COMBINE_MODES"),
    "loss.sampler_correction.level": ("grpo_learner.grpo.losses", "SAMPLER_WEIGHT_LEVELS"),
    "push.transport": ("grpo_learner.weight_sync.transports", "PUSH_TRANSPORTS"),
    "push.lora_mode": ("grpo_learner.weight_sync.push_selection", "LORA_SELECTIONS"),
}


def registry_of(field: str) -> Registry[Any]:
    """The registry that the config field `field` (a key of REGISTRY_FIELDS) names an entry of."""
    module, name = REGISTRY_FIELDS[field]
    return getattr(importlib.import_module(module), name)


def check_registered_names(config: LearnerConfig) -> None:
    """ConfigError naming the first field whose value no registry knows, and what is registered."""
    for field in REGISTRY_FIELDS:
        try:
            registry_of(field).get_item(attrgetter(field)(config))
        except UnknownName as error:
            raise ConfigError(f"{field}: {error}") from None


def registered_names_help() -> str:
    """One line per registry field, its registered names: `loss.loss_type: bnpo, cispo, ...`."""
    return "\n".join(f"  {field}: {', '.join(sorted(registry_of(field)))}" for field in REGISTRY_FIELDS)
