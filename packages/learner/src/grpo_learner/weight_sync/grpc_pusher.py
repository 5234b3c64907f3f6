"""Push new weights to every rollout service, in parallel, without letting a dead one stall training.

Each member of the rollout pool has its own background worker that keeps trying to bring it to the
newest version: a failed push is retried with exponential backoff, and a service that joins, comes
back after being DOWN, or turns out to serve other weights (restarted) receives the *current*
weights (never a backlog of old versions); the pool admits it to prompts only once it has them.
`push()` hands the newest snapshot to every worker and waits until every READY service acknowledges
it or `deadline_s` passes, then reports who is behind; training continues either way. DOWN and
draining services get no pushes (and are not waited for).

The snapshot is a detached CPU copy taken at push time, so the optimizer may change the live
parameters while slow services are still streaming. Transport: `grpo_common.weights.codec` buckets.

What travels is the `PushSelection`'s (push_selection.py): a service that has none of our weights
yet (first push, joined, DOWN and back, resynced) gets `everything`, one that took an earlier push
only what has `changed` (for LoRA the merged targeted tensors). The snapshot is cumulative: each
push copies only the changed tensors and shares the untouched ones with the previous snapshot.
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
from grpo_common.channel import ChannelConfig
from grpo_common.weights.codec import DEFAULT_BUCKET_BYTES, encode_state_dict_wire, update_weights_method

from grpo_learner.rollouts.pool import Member, MemberState, PoolSettings, RolloutPool
from grpo_learner.weight_sync.push_protocol import PushCounter, ServiceStatus
from grpo_learner.weight_sync.push_selection import FullWeights, PushSelection

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
class _Worker:
    status: ServiceStatus
    task: asyncio.Task | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    rejected_version: int = -1
    has_base: bool = False  # took one of our pushes whole: later ones may send the changed tensors only


@dataclass(frozen=True)
class _Snapshot:
    version: int
    tensors: dict[str, torch.Tensor]  # everything a fresh service needs, as of `version`
    changed: tuple[str, ...]  # the names an up-to-date service needs


class WeightPusher:
    """`WeightPush` over gRPC. Use inside a running event loop; `await close()` when done.

    `addresses` is a list of host:port (the pusher then owns a pool of its own) or the
    `RolloutPool` shared with the `RolloutClient`.
    """

    def __init__(
        self,
        addresses: Sequence[str] | RolloutPool,
        channel_config: ChannelConfig | None = None,
        *,
        deadline_s: float = 120.0,
        bucket_bytes: int = DEFAULT_BUCKET_BYTES,
        dtype: torch.dtype | None = None,
        initial_backoff_s: float = 0.2,
        max_backoff_s: float = 10.0,
        initial_version: int = 0,
        pool_settings: PoolSettings | None = None,
        selection: PushSelection | None = None,
    ) -> None:
        self.selection = selection or FullWeights()
        self.counter = PushCounter()
        self.deadline_s = deadline_s
        self.bucket_bytes = bucket_bytes
        self.dtype = dtype
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        if isinstance(addresses, RolloutPool):
            self.pool = addresses
        else:
            self.pool = RolloutPool(addresses, channel_config, pool_settings)
        self.pool.retain()
        self._latest: _Snapshot | None = None
        self._progress = asyncio.Event()  # an acknowledgement or a membership change
        self._workers: dict[str, _Worker] = {}
        self._retired: set[asyncio.Task] = set()  # workers of members that left, still stopping
        for member in self.pool.members:
            if member.version < 0:
                member.version = initial_version  # what the services were started with
            self._on_change(member)
        self.pool.subscribe(self._on_change)

    @property
    def statuses(self) -> list[ServiceStatus]:
        """One per service in the pool that is not being drained."""
        statuses = []
        for address, worker in self._workers.items():
            member = self.pool.get(address)
            if member is not None:
                worker.status.acked_version = member.version
                statuses.append(worker.status)
        return statuses

    def behind(self) -> list[ServiceStatus]:
        """Services that have not confirmed the newest pushed version (DOWN ones included)."""
        if self._latest is None:
            return []
        return [s for s in self.statuses if s.acked_version < self._latest.version]

    async def push(self, state_dict: Mapping[str, torch.Tensor], policy_version: int) -> list[ServiceStatus]:
        """Send `policy_version` to every service; wait at most deadline_s; return those still behind."""
        self._latest = self._snapshot(state_dict, policy_version)
        self.pool.require_version(policy_version)
        for worker in self._workers.values():
            worker.wake.set()

        def all_ready_acked() -> bool:
            return all(m.version >= policy_version for m in self.pool.members if m.state is MemberState.READY)

        deadline = time.monotonic() + self.deadline_s
        while True:
            self._progress.clear()
            remaining = deadline - time.monotonic()
            if all_ready_acked() or remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), remaining)
        behind = self.behind()
        for status in behind:
            member = self.pool.get(status.address)
            state = member.state.value if member is not None else "gone"
            logger.warning(
                "rollout %s (%s) is behind (has version %d, wants %d): %s; it gets the newest weights "
                "when it answers again",
                status.address,
                state,
                status.acked_version,
                policy_version,
                status.last_error or "no answer within the deadline",
            )
        return behind

    def _snapshot(self, state_dict: Mapping[str, torch.Tensor], version: int) -> _Snapshot:
        if self._latest is None:
            tensors = snapshot_state_dict(self.selection.everything(state_dict), self.dtype)
            changed = tuple(self.selection.changed(state_dict))
            return _Snapshot(version, tensors, changed)
        fresh = snapshot_state_dict(self.selection.changed(state_dict), self.dtype)
        return _Snapshot(version, {**self._latest.tensors, **fresh}, tuple(fresh))

    def metrics(self) -> dict[str, float]:
        return {**self.pool.metrics(), **self.counter.take()}

    def resync(self, address: str) -> None:
        """Forget what `address` acknowledged and send it the newest weights again.

        A rollout service that was restarted comes back on its start-up weights (version 0) while
        the pool still remembers its last acknowledgement; this is what the rollout client calls
        when the service answers FAILED_PRECONDITION (its weights are older than a request needs).
        """
        worker = self._workers.get(address)
        if worker is not None:
            worker.rejected_version = -1
            worker.has_base = False
        self.pool.mark_stale(address)

    def _on_change(self, member: Member) -> None:
        """Pool listener: one worker per member that is in the pool and not draining."""
        worker = self._workers.get(member.address)
        if self.pool.get(member.address) is not member or member.state is MemberState.DRAINING:
            if worker is not None:
                del self._workers[member.address]
                if worker.task is not None:
                    worker.task.cancel()
                    self._retired.add(worker.task)
                    worker.task.add_done_callback(self._retired.discard)
        else:
            if worker is None:
                worker = _Worker(ServiceStatus(member.address, acked_version=member.version))
                worker.task = asyncio.create_task(
                    self._run(member.address, worker), name=f"push-{member.address}"
                )
                self._workers[member.address] = worker
            if member.state is MemberState.DOWN or member.version < 0:
                worker.has_base = False  # it may come back restarted, on other weights
            worker.wake.set()
        self._progress.set()

    async def _run(self, address: str, worker: _Worker) -> None:
        backoff = self.initial_backoff_s
        while True:
            await worker.wake.wait()
            worker.wake.clear()
            while self._latest is not None:
                member = self.pool.get(address)
                if member is None or member.state in (MemberState.DOWN, MemberState.DRAINING):
                    break  # the pool wakes us when it is back
                snapshot = self._latest
                version = snapshot.version
                if member.version >= version or worker.rejected_version >= version:
                    break
                if member.version < 0:
                    worker.has_base = False
                if await self._send(member, worker, snapshot):
                    backoff = self.initial_backoff_s
                    continue
                if worker.rejected_version >= version:
                    break
                with contextlib.suppress(TimeoutError):  # a newer push or a state change wakes us early
                    await asyncio.wait_for(worker.wake.wait(), backoff)
                worker.wake.clear()
                backoff = min(backoff * 2, self.max_backoff_s)

    async def _send(self, member: Member, worker: _Worker, snapshot: _Snapshot) -> bool:
        status = worker.status
        version = snapshot.version
        start = time.perf_counter()
        member.push_in_flight = True
        if worker.has_base:
            tensors = {name: snapshot.tensors[name] for name in snapshot.changed}
        else:
            tensors = snapshot.tensors
        try:
            # pre-serialised chunks: one copy of the tensor bytes instead of protobuf's three
            chunks = encode_state_dict_wire(
                tensors.items(), version, self.bucket_bytes, lora_adapter=self.selection.lora_adapter
            )
            response = await update_weights_method(member.channel)(chunks, timeout=self.deadline_s)
        except (grpc.aio.AioRpcError, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError):
                if (task := asyncio.current_task()) is not None and task.cancelling():
                    raise  # the worker is being stopped
                status.last_error = "CANCELLED: the channel was replaced while pushing"
            else:
                status.last_error = f"{exc.code().name}: {exc.details()}"
            status.failures += 1
            if isinstance(exc, grpc.aio.AioRpcError) and exc.code() in PERMANENT_ERRORS:
                worker.rejected_version = version
                logger.error(
                    "rollout %s rejected weights v%d: %s", member.address, version, status.last_error
                )
            else:
                logger.info(
                    "push v%d to %s failed (%s); retrying", version, member.address, status.last_error
                )
            return False
        finally:
            member.push_in_flight = False
        status.failures = 0
        status.last_error = ""
        status.last_push_seconds = time.perf_counter() - start
        worker.has_base = True
        self.counter.add(tensors.values())
        self.pool.weights_delivered(member, response.policy_version)
        self._progress.set()
        logger.debug("pushed v%d to %s in %.2f s", version, member.address, status.last_push_seconds)
        return True

    async def close(self) -> None:
        self.pool.unsubscribe(self._on_change)
        tasks = [w.task for w in self._workers.values() if w.task is not None] + list(self._retired)
        self._workers.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.pool.release()
