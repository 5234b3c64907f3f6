"""Push new weights to every rollout service, in parallel, without letting a dead one stall training.

Each service has its own background worker that keeps trying to bring it to the newest version: a
failed push is retried with exponential backoff, and a service that was down receives the *current*
weights when it comes back (never a backlog of old versions). `push()` hands the newest snapshot to
every worker and waits until all acknowledge it or `deadline_s` passes, then reports who is behind;
training continues either way.

The snapshot is a detached CPU copy taken at push time, so the optimizer may change the live
parameters while slow services are still streaming. Transport: `grpo_common.weight_codec` buckets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import grpc
import torch
from grpc import StatusCode
from grpo.v1 import rollout_pb2_grpc
from grpo_common.channel import ChannelConfig, create_channel
from grpo_common.weight_codec import DEFAULT_BUCKET_BYTES, encode_state_dict

logger = logging.getLogger(__name__)

# A service that rejects the weights themselves will reject them again: wait for the next version.
PERMANENT_ERRORS = frozenset(
    {StatusCode.INVALID_ARGUMENT, StatusCode.UNAUTHENTICATED, StatusCode.UNIMPLEMENTED}
)


def snapshot_state_dict(
    state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """Detached CPU copies (cast to `dtype` for floating tensors when given)."""
    snapshot = {}
    for name, tensor in state_dict.items():
        target = dtype if dtype is not None and tensor.is_floating_point() else tensor.dtype
        snapshot[name] = tensor.detach().to("cpu", dtype=target, copy=True)
    return snapshot


@dataclass
class ServiceStatus:
    address: str
    acked_version: int = 0  # the version the service confirmed it uses
    failures: int = 0  # consecutive failed attempts
    last_error: str = ""
    last_push_seconds: float = 0.0


@dataclass
class _Target:
    status: ServiceStatus
    stub: rollout_pb2_grpc.RolloutServiceStub
    channel: grpc.aio.Channel
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    rejected_version: int = -1


class WeightPusher:
    """Use inside a running event loop; `await close()` when done."""

    def __init__(
        self,
        addresses: Sequence[str],
        channel_config: ChannelConfig | None = None,
        *,
        deadline_s: float = 120.0,
        bucket_bytes: int = DEFAULT_BUCKET_BYTES,
        dtype: torch.dtype | None = None,
        initial_backoff_s: float = 0.2,
        max_backoff_s: float = 10.0,
        initial_version: int = 0,
    ) -> None:
        self.deadline_s = deadline_s
        self.bucket_bytes = bucket_bytes
        self.dtype = dtype
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self._latest: tuple[int, dict[str, torch.Tensor]] | None = None
        self._acked = asyncio.Condition()
        self._targets: list[_Target] = []
        for address in addresses:
            channel = create_channel(address, channel_config)
            status = ServiceStatus(address, acked_version=initial_version)
            self._targets.append(_Target(status, rollout_pb2_grpc.RolloutServiceStub(channel), channel))
        self._workers = [
            asyncio.create_task(self._worker(t), name=f"push-{t.status.address}") for t in self._targets
        ]

    @property
    def statuses(self) -> list[ServiceStatus]:
        return [t.status for t in self._targets]

    def behind(self) -> list[ServiceStatus]:
        """Services that have not confirmed the newest pushed version."""
        version = self._latest[0] if self._latest else 0
        return [t.status for t in self._targets if t.status.acked_version < version]

    async def push(self, state_dict: Mapping[str, torch.Tensor], policy_version: int) -> list[ServiceStatus]:
        """Send `policy_version` to every service; wait at most deadline_s; return those still behind."""
        self._latest = (policy_version, snapshot_state_dict(state_dict, self.dtype))
        for target in self._targets:
            target.wake.set()

        def all_acked() -> bool:
            return all(t.status.acked_version >= policy_version for t in self._targets)

        async with self._acked:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acked.wait_for(all_acked), self.deadline_s)
        behind = self.behind()
        for status in behind:
            logger.warning(
                "rollout %s is behind (has version %d, wants %d): %s; it gets the newest weights when it "
                "answers again",
                status.address,
                status.acked_version,
                policy_version,
                status.last_error or "no answer within the deadline",
            )
        return behind

    def resync(self, address: str) -> None:
        """Forget what `address` acknowledged and send it the newest weights again.

        A rollout service that was restarted comes back on its start-up weights (version 0) while
        this pusher still remembers its last acknowledgement; the rollout client calls this when
        the service answers FAILED_PRECONDITION (its weights are older than the request needs).
        """
        for target in self._targets:
            if target.status.address == address:
                target.status.acked_version = -1
                target.rejected_version = -1
                target.wake.set()

    async def _worker(self, target: _Target) -> None:
        backoff = self.initial_backoff_s
        while True:
            await target.wake.wait()
            target.wake.clear()
            while self._latest is not None:
                version, snapshot = self._latest
                if target.status.acked_version >= version or target.rejected_version >= version:
                    break
                if await self._send(target, version, snapshot):
                    backoff = self.initial_backoff_s
                    continue
                if target.rejected_version >= version:
                    break
                with contextlib.suppress(TimeoutError):  # a newer push wakes us early
                    await asyncio.wait_for(target.wake.wait(), backoff)
                target.wake.clear()
                backoff = min(backoff * 2, self.max_backoff_s)

    async def _send(self, target: _Target, version: int, snapshot: dict[str, torch.Tensor]) -> bool:
        status = target.status
        start = time.perf_counter()
        try:
            chunks = encode_state_dict(snapshot.items(), version, self.bucket_bytes)
            response = await target.stub.UpdateWeights(chunks, timeout=self.deadline_s)
        except grpc.aio.AioRpcError as exc:
            status.failures += 1
            status.last_error = f"{exc.code().name}: {exc.details()}"
            if exc.code() in PERMANENT_ERRORS:
                target.rejected_version = version
                logger.error(
                    "rollout %s rejected weights v%d: %s", status.address, version, status.last_error
                )
            else:
                logger.info(
                    "push v%d to %s failed (%s); retrying", version, status.address, status.last_error
                )
            return False
        status.failures = 0
        status.last_error = ""
        status.last_push_seconds = time.perf_counter() - start
        async with self._acked:
            status.acked_version = max(status.acked_version, response.policy_version)
            self._acked.notify_all()
        logger.debug("pushed v%d to %s in %.2f s", version, status.address, status.last_push_seconds)
        return True

    async def close(self) -> None:
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        for target in self._targets:
            await target.channel.close()
