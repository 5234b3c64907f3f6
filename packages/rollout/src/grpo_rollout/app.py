"""Wiring: config -> generator + tokenizer + reward client -> a gRPC server with the servicer.

Kept apart from the CLI so tests and other programs can run a rollout service in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from grpo.v1 import rollout_pb2, rollout_pb2_grpc
from grpo_common.sandbox.slots import service_slots_installed
from grpo_common.server import RunningServer, registration, start_server
from grpo_common.weights.codec import read_weight_chunk

from grpo_rollout.backends.contract import Generator
from grpo_rollout.backends.registry import GENERATORS
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
    """The configured backend's generator (`GENERATORS`), its clean-up pushed on `stack`."""
    return await GENERATORS[config.generator].build(config, stack)


@contextlib.asynccontextmanager
async def running_rollout(config: RolloutServiceConfig) -> AsyncIterator[RunningRollout]:
    """Start everything; on exit stop the server (gracefully), then the backend and clients."""
    load_plugins(config.plugins)  # PluginError (a RuntimeError) before anything heavy starts
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(service_slots_installed(config.sandbox))  # the python environment's bound
        generator = await build_generator(config, stack)
        encoder = await asyncio.to_thread(PromptEncoder.from_pretrained, config.model)
        reward = RewardClient.from_config(config.reward)
        stack.push_async_callback(reward.close)
        servicer = RolloutServicer(generator, encoder, reward, config.limits.for_backend(config.generator))
        stack.push_async_callback(servicer.close)
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
