"""Run the RewardService: a Verifier (worker processes with every task) behind grpo_common's gRPC server."""

from __future__ import annotations

import logging
from collections.abc import Callable

from grpo.v1 import reward_pb2_grpc
from grpo_common.row_fields import FieldLimits
from grpo_common.sandbox.slots import service_slots_installed
from grpo_common.server import RunningServer, registration, serve_until_signalled, start_server

from grpo_reward.service.config import RewardServiceConfig
from grpo_reward.service.servicer import SERVICE_NAME, RewardServicer
from grpo_reward.tasks.batched import BATCH_TASKS, BatchTask
from grpo_reward.tasks.plugins import load_plugins
from grpo_reward.verifier import Verifier

logger = logging.getLogger(__name__)


class TermStartError(RuntimeError):
    """A reward model or judge the operator named cannot be started; the message says which and why."""


def start_model_terms(config: RewardServiceConfig) -> list[BatchTask]:
    """The operator's reward models and judges, started; none configured needs no extra installed."""
    if not (config.reward_models or config.judges):
        return []
    try:
        from grpo_reward.models.reward_model import ModelStartError
        from grpo_reward.models.terms import start_terms
    except ImportError as error:
        raise TermStartError(
            f"reward models and judges need the models extra (pip install 'grpo-reward[models]'): {error}"
        ) from None
    try:
        return start_terms(config.reward_models, config.judges)
    except (ModelStartError, ValueError) as error:
        raise TermStartError(str(error)) from None


async def start_reward_server(config: RewardServiceConfig, verifier: Verifier) -> RunningServer:
    """Start serving `verifier` as grpo.v1.RewardService; returns once the port is bound."""
    servicer = RewardServicer(
        verifier,
        max_batch_items=config.max_batch_items,
        default_timeout_s=config.default_timeout_s,
        field_limits=FieldLimits(max_bytes=config.max_fields_bytes, max_depth=config.max_fields_depth),
    )
    return await start_server(
        [registration(servicer, reward_pb2_grpc.add_RewardServiceServicer_to_server, SERVICE_NAME)],
        config.server,
    )


async def serve(
    config: RewardServiceConfig, on_started: Callable[[RunningServer], None] | None = None
) -> None:
    """Load the plugins, serve until SIGTERM/SIGINT, then drain in-flight calls and stop the workers.

    Raises PluginError (before binding the port) when a plugin or an entry point cannot be loaded, and
    TermStartError when a reward model or a judge cannot be started.
    """
    load_plugins(config.plugins)  # here, to name their tasks; the workers' zygote imports them too
    terms = start_model_terms(config)
    with (
        BATCH_TASKS.serving(terms),
        service_slots_installed(config.sandbox),
        Verifier(  # the workers inherit the slots
            workers=config.workers,
            timeout_s=config.default_timeout_s,
            plugins=config.plugins,
            memory_limit_mb=config.worker_memory_mb,
            lane_workers=config.lane_workers,
            task_lanes=config.task_lanes,
        ) as verifier,
    ):
        if not verifier.wait_ready(timeout_s=120):
            logger.warning("verification workers are slow to start; serving anyway")
        running = await start_reward_server(config, verifier)
        if on_started is not None:
            on_started(running)
        await serve_until_signalled(running)
