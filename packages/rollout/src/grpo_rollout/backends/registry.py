"""`GENERATORS`: the generation backends by name (`generator = "hf"` in the rollout config).

A backend is registered with its default batching limits and a `build` that makes its `Generator`
from the service's config, so the service never asks which backend it runs: `hf` and `sglang`
register themselves in `backends/hf/backend.py` and `backends/sglang/backend.py`; an installed
package adds one as an entry point in group `grpo.generators`, or the config names `module:attr`.
This module imports no torch, so the config and `--help` can list and check names cheaply.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from grpo_common.registry import Registry

if TYPE_CHECKING:
    from grpo_rollout.backends.contract import Generator
    from grpo_rollout.config import RolloutServiceConfig


@dataclass(frozen=True)
class BackendLimits:
    """The batching a backend wants where `[limits]` leaves a field unset.

    A backend that batches continuously (SGLang) wants one prompt per call, many calls at once and
    many batches ahead; one that runs a batch in this process (hf) wants few, large calls.
    """

    batch_prompts: int | None  # prompts per generate call; None: limits.batch_sequences // group size
    max_concurrent_batches: int  # generate calls running at once, service-wide
    min_batches_ahead: int  # per request, at least this many batches ahead of a slow reader


class GeneratorBackend(Protocol):
    limits: BackendLimits

    async def build(self, config: RolloutServiceConfig, stack: contextlib.AsyncExitStack) -> Generator:
        """The backend's generator for `config`, its clean-up pushed on `stack`."""
        ...


GENERATORS: Registry[GeneratorBackend] = Registry("generator backend", "grpo.generators")
