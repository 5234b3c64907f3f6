"""Weights over a collective group: InitWeightSync and UpdateWeightsDistributed for RolloutServicer.

For backends that implement `DistributedWeightReceiver` (SGLang): the service only coordinates, the
tensors go from the learner's broadcast straight into the engines. One update spans several RPCs (one
per bucket); this keeps it open between them with generation paused, and abandons it if the next
bucket does not come within `ServiceLimits.distributed_update_idle_s`. It shares the servicer's update
lock, so a pushed update and a distributed one never interleave, and the servicer's episode gate, held
alone from bucket 0 to the end of the update, so that (as with a push) running episode batches finish
first and no multi-turn group sees two weight versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from grpo.v1 import rollout_pb2

from grpo_rollout.backends.contract import (
    BackendError,
    DistributedBucketSink,
    DistributedWeightReceiver,
    Generator,
    WeightUpdateError,
)
from grpo_rollout.request_validation import RequestError
from grpo_rollout.version_gate import VersionGate
from grpo_rollout.weight_sync_requests import Bucket, validate_bucket, validate_init

if TYPE_CHECKING:
    from grpo_rollout.config import ServiceLimits

logger = logging.getLogger(__name__)


@dataclass
class _OpenUpdate:
    """A distributed update between two bucket RPCs."""

    sink: DistributedBucketSink
    version: int
    episodes_held: contextlib.AsyncExitStack  # the episode gate, held alone until the update ends
    next_index: int = 0
    watchdog: asyncio.Task[None] | None = None


class DistributedUpdates:
    def __init__(
        self,
        generator: Generator,
        update_lock: asyncio.Lock,
        episode_gate: VersionGate,
        limits: ServiceLimits,
    ) -> None:
        self._generator = generator
        self._update_lock = update_lock
        self._episode_gate = episode_gate
        self._limits = limits
        self._open_update: _OpenUpdate | None = None

    def receiver(self) -> DistributedWeightReceiver | None:
        generator = self._generator
        return generator if isinstance(generator, DistributedWeightReceiver) else None

    def require_receiver(self) -> DistributedWeightReceiver:
        """The backend's group receiver, or RequestError(UNIMPLEMENTED) when it cannot join one."""
        receiver = self.receiver()
        if receiver is None or receiver.weight_sync_ranks() == 0:
            backend = self._generator.info().backend
            raise RequestError(
                grpc.StatusCode.UNIMPLEMENTED,
                f"this rollout service's {backend!r} backend cannot join a weight-update group "
                "(RolloutInfo.weight_sync_ranks is 0); push weights with UpdateWeights instead",
            )
        return receiver

    async def init(
        self, request: rollout_pb2.InitWeightSyncRequest, context: grpc.aio.ServicerContext
    ) -> rollout_pb2.InitWeightSyncResponse:
        try:
            receiver = self.require_receiver()
            group = validate_init(request, receiver.weight_sync_ranks())
        except RequestError as exc:
            await context.abort(exc.code, exc.message)
        async with self._update_lock:
            await self._abandon_open_update(f"InitWeightSync for group {group.group_name!r}")
            try:
                ranks = await receiver.init_weights_update_group(
                    group.master_address,
                    group.master_port,
                    group.rank_offset,
                    group.world_size,
                    group.group_name,
                    group.backend,
                )
            except WeightUpdateError as exc:
                await context.abort(grpc.StatusCode.ABORTED, f"{exc}; check the learner's side of the group")
            except BackendError as exc:
                await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        return rollout_pb2.InitWeightSyncResponse(ranks=ranks)

    async def bucket(
        self, request: rollout_pb2.DistributedWeightsRequest, context: grpc.aio.ServicerContext
    ) -> rollout_pb2.UpdateWeightsResponse:
        try:
            receiver = self.require_receiver()
            bucket = validate_bucket(request, self._generator.parameter_specs())
        except RequestError as exc:
            await context.abort(exc.code, exc.message)
        async with self._update_lock:
            joined = receiver.weight_sync_group()
            if bucket.group_name != joined:
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"weight-update group {bucket.group_name!r} is not initialised on this service "
                    f"(joined: {joined or 'none'}); call InitWeightSync first",
                )
            started = time.monotonic()
            try:
                update = await self._bucket_target(receiver, bucket)
            except RequestError as exc:
                await context.abort(exc.code, exc.message)
            paused = time.monotonic()
            try:
                await update.sink.receive_bucket(bucket.names, bucket.dtypes, bucket.shapes, bucket.last)
            except (WeightUpdateError, BackendError) as exc:
                # ABORTED tells the learner that every engine answered after the broadcast (the group
                # stays in step); UNAVAILABLE that some engine may not have taken part.
                self._open_update = None
                await update.episodes_held.aclose()
                code = (
                    grpc.StatusCode.UNAVAILABLE if isinstance(exc, BackendError) else grpc.StatusCode.ABORTED
                )
                await context.abort(code, f"{exc}; start the update again at bucket_index 0")
            except asyncio.CancelledError:  # the caller went away; the sink abandons the update itself
                self._open_update = None
                await update.episodes_held.aclose()
                raise
            received = time.monotonic()
            if bucket.last:
                self._open_update = None
                await update.episodes_held.aclose()
                logger.info(
                    "policy version %d over group %r: %d bucket(s)", bucket.version, joined, bucket.index + 1
                )
            else:
                update.next_index += 1
                update.watchdog = asyncio.create_task(self._watch(update))
            resumed = time.monotonic()
        return rollout_pb2.UpdateWeightsResponse(
            policy_version=self._generator.info().weight_version,
            tensors=len(bucket.names),
            bytes=bucket.nbytes,
            receive_seconds=received - paused,
            apply_seconds=(paused - started) + (resumed - received),
        )

    async def _bucket_target(self, receiver: DistributedWeightReceiver, bucket: Bucket) -> _OpenUpdate:
        """The open update this bucket continues, or a new one for bucket 0 (under _update_lock)."""
        update = self._open_update
        if bucket.index == 0:
            if update is not None:
                await self._abandon_open_update(f"bucket 0 of version {bucket.version} started a new update")
            episodes_held = contextlib.AsyncExitStack()
            await episodes_held.enter_async_context(self._episode_gate.exclusive())
            try:
                sink = await receiver.begin_distributed_update(bucket.version, bucket.group_name)
            except BaseException as exc:  # refused, unreachable or cancelled: no update, let episodes go
                await episodes_held.aclose()
                if isinstance(exc, WeightUpdateError):
                    raise RequestError(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from exc
                if isinstance(exc, BackendError):
                    raise RequestError(grpc.StatusCode.UNAVAILABLE, str(exc)) from exc
                raise
            update = self._open_update = _OpenUpdate(sink, bucket.version, episodes_held)
            return update
        if update is not None and update.sink.done:  # ended without us (its caller was cancelled)
            await update.episodes_held.aclose()
            self._open_update = update = None
        if update is None or update.version != bucket.version or update.next_index != bucket.index:
            expected = (
                f"the open update is version {update.version}, expecting bucket_index {update.next_index}"
                if update is not None
                else "no update is open"
            )
            raise RequestError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"bucket_index {bucket.index} of version {bucket.version} does not continue an update "
                f"({expected}); start the update again at bucket_index 0",
            )
        if update.watchdog is not None:
            update.watchdog.cancel()
            update.watchdog = None
        return update

    async def _abandon_open_update(self, reason: str) -> None:
        """End the open update without adopting its version (caller holds _update_lock)."""
        update, self._open_update = self._open_update, None
        if update is None:
            return
        if update.watchdog is not None:
            update.watchdog.cancel()
        try:
            await update.sink.abandon(reason)
        finally:
            await update.episodes_held.aclose()

    async def _watch(self, update: _OpenUpdate) -> None:
        """Abandon `update` if its next bucket does not arrive in time (a learner that went away)."""
        idle = self._limits.distributed_update_idle_s
        await asyncio.sleep(idle)
        async with self._update_lock:
            if self._open_update is update:
                update.watchdog = None  # this task: do not cancel ourselves
                await self._abandon_open_update(f"no bucket {update.next_index} within {idle:.0f} s")
