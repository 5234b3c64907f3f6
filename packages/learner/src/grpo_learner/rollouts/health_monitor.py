"""Background probes of every rollout service: health (grpc.health.v1) and load (GetInfo).

Every `interval_s` each member gets a `Health.Check` for "grpo.v1.RolloutService" and a `GetInfo`,
concurrently, each with a short deadline, so one slow or hung service never delays the others or
generation. The results go to the pool, which decides states (see rollouts.pool). A DOWN member is
probed on a fresh channel each time: gRPC's reconnect backoff on a channel whose server vanished
grows to minutes, and a service that restarts should be back within one probe period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpo.v1 import rollout_pb2, rollout_pb2_grpc

if TYPE_CHECKING:
    from grpo_learner.rollouts.member import Member
    from grpo_learner.rollouts.pool import RolloutPool

logger = logging.getLogger(__name__)

HEALTH_SERVICE = "grpo.v1.RolloutService"


@dataclass
class ProbeResult:
    ok: bool  # answered, and its health says SERVING
    info: rollout_pb2.RolloutInfo | None
    started: float  # time.monotonic() when the probe was sent
    own_at_start: int  # the learner's outstanding prompts at that service when it was sent
    not_serving: bool = False  # it answered, and said it is not serving (e.g. shutting down)
    error: str = ""
    load_only: bool = False  # a GetInfo for load figures only: says nothing about health


def _describe(error: BaseException) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return type(error).__name__


class PoolMonitor:
    def __init__(self, pool: RolloutPool, interval_s: float, timeout_s: float) -> None:
        self.pool = pool
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._task: asyncio.Task | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.interval_s > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name="rollout-pool-monitor")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.probe_all()
            except Exception:  # a monitor bug must not stop training; say so and go on
                logger.exception("probing the rollout services failed; will try again")
            await asyncio.sleep(self.interval_s)

    async def probe_all(self) -> None:
        await asyncio.gather(*(self.probe(m) for m in self.pool.members))

    async def probe(self, member: Member) -> None:
        if not member.is_down:
            result = await self._ask(member, member.stub, member.health)
        else:
            fresh = self.pool.new_channel(member.address)
            try:
                stub = rollout_pb2_grpc.RolloutServiceStub(fresh)
                result = await self._ask(member, stub, health_pb2_grpc.HealthStub(fresh))
            except BaseException:
                await fresh.close()
                raise
            if result.ok and self.pool.get(member.address) is member and member.is_down:
                self.pool.replace_channel(member, fresh)
            else:
                await fresh.close()
        self.pool.record_probe(member, result)

    async def _ask(
        self,
        member: Member,
        stub: rollout_pb2_grpc.RolloutServiceStub,
        health: health_pb2_grpc.HealthStub,
    ) -> ProbeResult:
        started, own = time.monotonic(), member.outstanding
        check, info = await asyncio.gather(
            health.Check(health_pb2.HealthCheckRequest(service=HEALTH_SERVICE), timeout=self.timeout_s),
            stub.GetInfo(rollout_pb2.GetInfoRequest(), timeout=self.timeout_s),
            return_exceptions=True,
        )
        info_ok = isinstance(info, rollout_pb2.RolloutInfo)
        info_missing = isinstance(info, grpc.aio.AioRpcError) and info.code() == grpc.StatusCode.UNIMPLEMENTED
        result = ProbeResult(ok=False, info=info if info_ok else None, started=started, own_at_start=own)
        if isinstance(check, BaseException):
            result.error = f"health check: {_describe(check)}"
        elif check.status != health_pb2.HealthCheckResponse.SERVING:
            result.not_serving = True
            result.error = (
                f"health check says {health_pb2.HealthCheckResponse.ServingStatus.Name(check.status)}"
            )
        elif not info_ok and not info_missing:
            result.error = f"GetInfo: {_describe(info)}"
        else:
            result.ok = True
        return result

    async def probe_loads(self, members: Sequence[Member], timeout_s: float) -> None:
        """GetInfo only, for load figures before an assignment; failures are ignored here."""

        async def one(member: Member) -> None:
            started, own = time.monotonic(), member.outstanding
            try:
                info = await member.stub.GetInfo(rollout_pb2.GetInfoRequest(), timeout=timeout_s)
            except (grpc.aio.AioRpcError, asyncio.CancelledError):
                if (task := asyncio.current_task()) is not None and task.cancelling():
                    raise
                return
            result = ProbeResult(ok=True, info=info, started=started, own_at_start=own, load_only=True)
            self.pool.record_probe(member, result)

        await asyncio.gather(*(one(m) for m in members))
