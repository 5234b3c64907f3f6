"""Wiring: config -> generator + tokenizer + reward client -> a gRPC server with the servicer.

Kept apart from the CLI so tests and other programs can run a rollout service in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import torch
from grpo.v1 import rollout_pb2, rollout_pb2_grpc
from grpo_common.server import RunningServer, registration, start_server
from grpo_common.weights.codec import read_weight_chunk

from grpo_rollout.backends.contract import Generator
from grpo_rollout.config import RolloutServiceConfig
from grpo_rollout.environments.plugins import load_plugins
from grpo_rollout.prompt_encoding import PromptEncoder
from grpo_rollout.reward_client import RewardClient
from grpo_rollout.service import RolloutServicer

logger = logging.getLogger(__name__)

SERVICE_NAME = rollout_pb2.DESCRIPTOR.services_by_name["RolloutService"].full_name


@dataclass
class RunningRollout:
    server: RunningServer
    servicer: RolloutServicer
    generator: Generator


async def build_generator(config: RolloutServiceConfig, stack: contextlib.AsyncExitStack) -> Generator:
    if config.generator == "hf":
        from grpo_rollout.backends.hf.generator import HFGenerator

        if config.hf.torch_threads:
            torch.set_num_threads(config.hf.torch_threads)
        generator = await asyncio.to_thread(
            HFGenerator.from_pretrained, config.model, config.hf.device, config.hf.dtype
        )
    else:
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
            config.model,
            read_model_facts(Path(config.model)),
            urls,
            router_url=settings.router_url,
            weight_dir=settings.weight_dir,
            request_timeout_s=settings.request_timeout_s,
            health_timeout_s=settings.health_timeout_s,
            pause_mode=settings.pause_mode,
        )
    stack.push_async_callback(generator.close)
    return generator


@contextlib.asynccontextmanager
async def running_rollout(config: RolloutServiceConfig) -> AsyncIterator[RunningRollout]:
    """Start everything; on exit stop the server (gracefully), then the backend and clients."""
    load_plugins(config.plugins)  # PluginError (a RuntimeError) before anything heavy starts
    async with contextlib.AsyncExitStack() as stack:
        generator = await build_generator(config, stack)
        encoder = await asyncio.to_thread(PromptEncoder.from_pretrained, config.model)
        reward = RewardClient(
            config.reward.address,
            config.reward.channel,
            timeout_s=config.reward.timeout_s,
            attempts=config.reward.attempts,
            backoff_s=config.reward.backoff_s,
            max_batch_items=config.reward.max_batch_items,
        )
        stack.push_async_callback(reward.close)
        servicer = RolloutServicer(generator, encoder, reward, config.limits.for_backend(config.generator))
        server = await start_server(
            [
                registration(
                    servicer,
                    rollout_pb2_grpc.add_RolloutServiceServicer_to_server,
                    SERVICE_NAME,
                    # weight chunks stay bytes until the decoder reads tensor data in place
                    request_deserializers={"UpdateWeights": read_weight_chunk},
                )
            ],
            config.server,
        )
        stack.push_async_callback(server.stop)
        yield RunningRollout(server, servicer, generator)
