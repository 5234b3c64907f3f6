"""Loading the operator's plugins: `--plugin MODULE` imports a module whose `@TASKS.register` calls add
tasks; `--plugin module:function` registers that function as the task "module:function". Entry points in
group `grpo.tasks` are loaded too, so that the zygote holds every task before it forks a worker.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from grpo_common.registry import PluginError

from grpo_reward.tasks.contract import TASKS

__all__ = ["PluginError", "load_plugins"]

logger = logging.getLogger(__name__)


def load_plugins(plugins: Sequence[str]) -> list[str]:
    """Import each plugin and every installed `grpo.tasks` entry point; returns the task names now known."""
    names = TASKS.load_plugins(plugins)
    logger.info("reward tasks: %s", ", ".join(names))
    return names
