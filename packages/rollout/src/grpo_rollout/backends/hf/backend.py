"""The `hf` entry of `GENERATORS`: a transformers model in this process, one batch at a time."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from grpo_rollout.backends.registry import GENERATORS, BackendLimits

if TYPE_CHECKING:
    from grpo_rollout.backends.contract import Generator
    from grpo_rollout.config import RolloutServiceConfig


@GENERATORS.register("hf")
class HFBackend:
    # One batch runs at a time on the process's cores, so a call holds as many rows as fit
    # (limits.batch_sequences); a second concurrent call would only contend for the same threads.
    limits = BackendLimits(batch_prompts=None, max_concurrent_batches=1, min_batches_ahead=1)

    @staticmethod
    async def build(config: RolloutServiceConfig, stack: contextlib.AsyncExitStack) -> Generator:
        import torch  # the heavy imports wait until the backend is chosen

        from grpo_rollout.backends.hf.generator import HFGenerator

        if config.hf.torch_threads:
            torch.set_num_threads(config.hf.torch_threads)
        generator = await asyncio.to_thread(HFGenerator.from_pretrained, config.model, config.hf)
        stack.push_async_callback(generator.close)
        return generator
