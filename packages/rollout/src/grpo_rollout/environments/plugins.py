"""Loading the operator's environment plugins (`grpo-rollout serve --plugin`), before the service serves.

`--plugin module:attr` registers that factory as the environment "module:attr"
(`ENVIRONMENTS.load_reference`); `--plugin module` imports a module whose `@ENVIRONMENTS.register` calls
add environments. Installed entry points in group `grpo.environments` are loaded too, so a broken one
stops start-up with its name instead of failing the first request that uses it. Requests then name
environments and never import anything.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from grpo_rollout.environments.contract import ENVIRONMENTS

logger = logging.getLogger(__name__)


def load_plugins(plugins: Sequence[str]) -> list[str]:
    """Load each plugin and every installed entry point (PluginError, a RuntimeError, if one fails)."""
    names = ENVIRONMENTS.load_plugins(plugins)
    logger.info("environments: %s", ", ".join(names) or "none")
    return names
