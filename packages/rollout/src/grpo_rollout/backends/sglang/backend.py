"""The `sglang` entry of `GENERATORS`: SGLang workers over HTTP, launched here when no url is given."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from grpo_rollout.backends.registry import GENERATORS, BackendLimits

if TYPE_CHECKING:
    from grpo_rollout.backends.contract import Generator
    from grpo_rollout.config import RolloutServiceConfig


@GENERATORS.register("sglang")
class SGLangBackend:
    # SGLang batches continuously across calls: one prompt per call, many calls in flight, and
    # enough batches ahead of a reader to keep its scheduler full.
    limits = BackendLimits(batch_prompts=1, max_concurrent_batches=256, min_batches_ahead=64)

    @staticmethod
    async def build(config: RolloutServiceConfig, stack: contextlib.AsyncExitStack) -> Generator:
        from grpo_rollout.backends.sglang.generator import SGLangGenerator
        from grpo_rollout.backends.sglang.launcher import LaunchSettings, SGLangProcess
        from grpo_rollout.backends.sglang.model_facts import read_model_facts

        settings = config.sglang
        urls = list(settings.urls)
        if not urls:
            process = SGLangProcess(LaunchSettings.of(config.model, settings))
            urls = [await process.start(settings.health_timeout_s)]
            stack.callback(process.stop)
        generator = await SGLangGenerator.connect(
            config.model, read_model_facts(Path(config.model)), urls, settings
        )
        stack.push_async_callback(generator.close)
        return generator
