"""Loading the operator's environment plugins (`grpo-rollout serve --plugin`), before the service serves.

`--plugin module:attr` registers that factory as the environment "module:attr"
(`ENVIRONMENTS.load_reference`); `--plugin module` imports a module whose `@ENVIRONMENTS.register` calls
add environments. Installed entry points in group `grpo.environments` are loaded too, so a broken one
stops start-up with its name instead of failing the first request that uses it. Requests then name
environments and never import anything.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence

from grpo_common.registry import UnknownName

from grpo_rollout.environments.contract import ENVIRONMENTS

logger = logging.getLogger(__name__)


class PluginError(RuntimeError):
    """A plugin that cannot be loaded; the message names it and says why."""


def load_plugins(plugins: Sequence[str]) -> list[str]:
    """Load each plugin and every installed entry point; returns the environment names now known."""
    for plugin in plugins:
        try:
            if ":" in plugin:
                ENVIRONMENTS.load_reference(plugin)
            else:
                importlib.import_module(plugin)
        except UnknownName as error:
            raise PluginError(f"plugin {plugin!r}: {error}") from None
        except Exception as error:  # an import can fail in any way; name the plugin, not a traceback
            raise PluginError(
                f"plugin {plugin!r} failed to import: {type(error).__name__}: {error}"
            ) from None
    for name in list(ENVIRONMENTS):
        try:
            ENVIRONMENTS.get_item(name)
        except Exception as error:
            raise PluginError(
                f"entry point {name!r} in group 'grpo.environments' failed to load: "
                f"{type(error).__name__}: {error}"
            ) from None
    names = sorted(ENVIRONMENTS)
    logger.info("environments: %s", ", ".join(names) or "none")
    return names
