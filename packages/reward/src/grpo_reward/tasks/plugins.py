"""Loading the operator's plugins: `--plugin MODULE` imports a module whose `@TASKS.register` calls add
tasks; `--plugin module:function` registers that function as the task "module:function". Entry points in
group `grpo.tasks` are loaded too, so that the zygote holds every task before it forks a worker.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence

from grpo_common.registry import UnknownName

from grpo_reward.tasks.contract import TASKS

logger = logging.getLogger(__name__)


class PluginError(RuntimeError):
    """A plugin that cannot be loaded; the message names it and says why."""


def load_plugins(plugins: Sequence[str]) -> list[str]:
    """Import each plugin and every installed `grpo.tasks` entry point; returns the task names now known."""
    for plugin in plugins:
        try:
            if ":" in plugin:
                TASKS.load_reference(plugin)
            else:
                importlib.import_module(plugin)
        except UnknownName as error:
            raise PluginError(f"plugin {plugin!r}: {error}") from None
        except Exception as error:  # an import can fail in any way; name the plugin, not a traceback
            problem = f"{type(error).__name__}: {error}"
            raise PluginError(f"plugin {plugin!r} failed to import: {problem}") from None
    for name in list(TASKS):
        try:
            TASKS.get_item(name)
        except Exception as error:
            raise PluginError(
                f"entry point {name!r} in group 'grpo.tasks' failed to load: {type(error).__name__}: {error}"
            ) from None
    names = sorted(TASKS)
    logger.info("reward tasks: %s", ", ".join(names))
    return names
