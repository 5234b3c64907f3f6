"""Push weights from learner rank 0 into SGLang engines over an NCCL weight-update group.

The portable path (`grpc_pusher.WeightPusher`) streams bytes over gRPC; this one broadcasts GPU
tensors straight into the engines, coordinated through each rollout service so the learner never
speaks SGLang's HTTP API:

    connect(addresses): GetInfo -> ranks of each service (weight_sync_ranks; 0 = cannot, e.g. hf)
        -> host the TCP store -> [InitWeightSync(rank_offset = 1 + ranks before it) to every
        service] concurrently with forming the group as rank 0
    push(named_tensors, version): per bucket (up to bucket_bytes, tensors never split)
        -> UpdateWeightsDistributed(names, dtypes, shapes, bucket_index, last) to every service,
        not awaited -> broadcast each tensor from rank 0 in names order -> await every reply

A service adopts the version only when its engines took the last bucket; any error raises
WeightSyncError and the learner's version must not advance (push again, or fall back to gRPC).
`named_tensors` may be a generator: a sharded learner can gather full tensors bucket by bucket
(one bucket is prepared ahead, so at most two are in memory).

Failure modes, and why they are told apart: an engine that refuses a bucket after receiving it
(SGLang's load failed; the service answers ABORTED) leaves the group usable. Any other error means
some engines may not have taken part in the bucket's broadcasts, so rank 0 waits for ranks that
never come, or the group's collectives are out of step (the next receive would read this bucket's
data): the group is then unusable (`broken`), and `close()` + `connect()` build a new one. Its name
stays taken in this process until the stuck broadcast times out, so a reconnect meanwhile uses
"<group_name>-2" (and so on); the rollout services drop the old group when they join the new one.
Telling these apart is `nccl_collective_wait`'s job.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc
import torch
import torch.distributed as dist
from grpo.v1 import rollout_pb2, rollout_pb2_grpc
from grpo_common.channel import ChannelConfig, create_channel
from grpo_common.weights.codec import WeightStreamError, dtype_name

from grpo_learner.config import NcclPushConfig, PushConfig
from grpo_learner.weight_sync import nccl_group as weight_group
from grpo_learner.weight_sync.nccl_collective_wait import WeightSyncError, await_collective_and_calls
from grpo_learner.weight_sync.nccl_streaming import in_daemon_thread, iter_buckets, with_last

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class SyncReport:
    version: int
    buckets: int
    tensors: int
    bytes: int
    seconds: float


class NcclWeightSync:
    """Learner rank 0's weight sync over a collective group; use inside a running event loop."""

    def __init__(
        self, settings: NcclPushConfig, dtype: torch.dtype | None, channel_config: ChannelConfig | None
    ) -> None:
        """`settings` is `[push.nccl]` itself (no copy of it); `dtype`: floating tensors are cast to it."""
        if not settings.master_address:
            raise ValueError(
                "push.nccl.master_address is not set: the learner's address as the SGLang engines reach it"
            )
        self.settings = settings
        self.dtype = dtype
        self._channel_config = channel_config
        self._addresses: list[str] = []
        self._channels: list[grpc.aio.Channel] = []
        self._stubs: list[rollout_pb2_grpc.RolloutServiceStub] = []
        self._group: dist.ProcessGroup | None = None
        self._store: dist.TCPStore | None = None
        self._lock = asyncio.Lock()
        self._collectives_idle = threading.Event()  # no collective of the current group is running
        self._collectives_idle.set()
        self.broken = False
        self.world_size = 0
        self.group_name = settings.group_name  # the name in use (a suffix after a stuck group)

    @classmethod
    def from_config(cls, push: PushConfig, channel: ChannelConfig | None = None) -> NcclWeightSync:
        """The sync of the learner's `[push]` section: its `[push.nccl]` options and its dtype."""
        return cls(push.nccl, getattr(torch, push.dtype) if push.dtype else None, channel)

    @property
    def connected(self) -> bool:
        return self._group is not None and not self.broken

    # --- connect --------------------------------------------------------------------------------
    async def connect(self, addresses: Sequence[str]) -> None:
        """Form the group with the engines behind every rollout service at `addresses`."""
        if self._group is not None or self._channels:
            raise WeightSyncError("already connected: await close() before connecting again")
        if not addresses:
            raise ValueError("no rollout addresses to sync weights with")
        self.broken = False
        settings = self.settings
        self._addresses = list(addresses)
        self._channels = [create_channel(a, self._channel_config) for a in self._addresses]
        self._stubs = [rollout_pb2_grpc.RolloutServiceStub(c) for c in self._channels]
        try:
            infos = await asyncio.gather(
                *(s.GetInfo(rollout_pb2.GetInfoRequest(), timeout=30) for s in self._stubs)
            )
        except grpc.aio.AioRpcError as exc:
            await self._close_channels()
            raise WeightSyncError(f"GetInfo failed ({exc.code().name}: {exc.details()})") from exc
        ranks = [info.weight_sync_ranks for info in infos]
        cannot = [
            f"{a} ({i.backend})"
            for a, i in zip(self._addresses, infos, strict=True)
            if not i.weight_sync_ranks
        ]
        if cannot:
            await self._close_channels()
            raise WeightSyncError(
                f"rollout services {cannot} cannot join a weight-update group (weight_sync_ranks 0): "
                "NCCL sync needs the sglang backend with tensor parallelism only; use push over gRPC"
            )
        offsets = [1 + sum(ranks[:i]) for i in range(len(ranks))]
        world_size = 1 + sum(ranks)
        self.group_name, suffix = settings.group_name, 1
        while weight_group.name_in_use(self.group_name):  # an earlier group is still stuck
            suffix += 1
            self.group_name = f"{settings.group_name}-{suffix}"
        if suffix > 1:
            logger.warning(
                "group %r is still stuck in this process; using %r", settings.group_name, self.group_name
            )
        group_name = self.group_name
        store = await asyncio.to_thread(
            weight_group.open_store,
            settings.master_address,
            settings.master_port,
            world_size,
            settings.timeout_s,
        )
        port = store.port
        forming = self._collective(
            lambda: weight_group.join_group(
                store, world_size, group_name, settings.backend, settings.timeout_s
            )
        )
        calls = [
            asyncio.ensure_future(
                stub.InitWeightSync(
                    rollout_pb2.InitWeightSyncRequest(
                        master_address=settings.master_address,
                        master_port=port,
                        group_name=group_name,
                        backend=settings.backend,
                        rank_offset=offset,
                        world_size=world_size,
                    ),
                    timeout=settings.timeout_s,
                )
            )
            for stub, offset in zip(self._stubs, offsets, strict=True)
        ]
        what = f"forming group {group_name!r} at {settings.master_address}:{port}"
        try:
            replies = await self._collective_and_calls(forming, calls, what)
            for address, reply, expected in zip(self._addresses, replies, ranks, strict=True):
                if reply.ranks != expected:
                    raise WeightSyncError(
                        f"rollout {address} took {reply.ranks} ranks, GetInfo said {expected}"
                    )
        except WeightSyncError:
            if forming.done() and not forming.cancelled() and forming.exception() is None:
                await asyncio.to_thread(weight_group.destroy, forming.result())
            await self._close_channels()
            raise
        self._group, self._store, self.world_size = forming.result(), store, world_size
        logger.info(
            "weight-update group %r formed: learner rank 0 at %s:%d, rollout ranks %s (world %d, %s)",
            group_name,
            settings.master_address,
            port,
            dict(zip(self._addresses, offsets, strict=True)),
            world_size,
            settings.backend,
        )

    # --- push -----------------------------------------------------------------------------------
    async def push(self, named_tensors: Iterable[tuple[str, torch.Tensor]], version: int) -> SyncReport:
        """Broadcast every tensor to every engine; each service adopts `version` after the last bucket."""
        if version < 0:
            raise ValueError(f"version {version} is negative; versions start at 0")
        async with self._lock:
            if self._group is None:
                raise WeightSyncError("not connected: await connect(addresses) first")
            if self.broken:
                raise WeightSyncError("the group is unusable after an earlier failure: close() and connect()")
            started = time.perf_counter()
            seen: set[str] = set()
            buckets = tensors = nbytes = 0
            prepared = (
                self._prepare(bucket, seen)
                for bucket in iter_buckets(named_tensors, self.settings.bucket_bytes)
            )
            for index, (bucket, last) in enumerate(with_last(prepared)):
                await self._send_bucket(bucket, index, last, version)
                buckets += 1
                tensors += len(bucket)
                nbytes += sum(t.numel() * t.element_size() for _, t in bucket)
            if not buckets:
                raise ValueError("no tensors to push")
        report = SyncReport(version, buckets, tensors, nbytes, time.perf_counter() - started)
        logger.info(
            "pushed version %d over group %r: %d tensors, %.1f MB in %d bucket(s), %.2f s",
            version,
            self.group_name,
            tensors,
            nbytes / 1e6,
            buckets,
            report.seconds,
        )
        return report

    def _prepare(
        self, bucket: list[tuple[str, torch.Tensor]], seen: set[str]
    ) -> list[tuple[str, torch.Tensor]]:
        device = (
            torch.device("cuda", torch.cuda.current_device()) if self.settings.backend == "nccl" else None
        )
        out = []
        for name, tensor in bucket:
            if name in seen:
                raise ValueError(f"tensor {name!r} appears twice in one push")
            seen.add(name)
            dtype = self.dtype if self.dtype and tensor.is_floating_point() else tensor.dtype
            out.append((name, tensor.detach().to(device=device or "cpu", dtype=dtype).contiguous()))
        return out

    async def _send_bucket(
        self, bucket: list[tuple[str, torch.Tensor]], index: int, last: bool, version: int
    ) -> None:
        try:
            dtypes = [dtype_name(t.dtype) for _, t in bucket]
        except WeightStreamError as exc:
            raise ValueError(str(exc)) from None
        request = rollout_pb2.DistributedWeightsRequest(
            policy_version=version,
            group_name=self.group_name,
            bucket_index=index,
            last=last,
            names=[name for name, _ in bucket],
            dtypes=dtypes,
            shapes=[rollout_pb2.TensorShape(dims=list(t.shape)) for _, t in bucket],
        )
        # The requests go out first and are not awaited: the engines answer only after receiving.
        calls = [
            asyncio.ensure_future(stub.UpdateWeightsDistributed(request, timeout=self.settings.timeout_s))
            for stub in self._stubs
        ]
        group = self._group
        assert group is not None
        tensors = [t for _, t in bucket]
        sending = self._collective(lambda: weight_group.broadcast(group, tensors))
        await self._collective_and_calls(sending, calls, f"bucket {index} of version {version}")

    # --- waiting on a collective and the RPCs that make the other ranks join it ------------------
    def _collective(self, function: Callable[[], T]) -> asyncio.Future[T]:
        idle = self._collectives_idle
        idle.clear()

        def run() -> T:
            try:
                return function()
            finally:
                idle.set()

        return in_daemon_thread(run)

    async def _collective_and_calls(
        self, collective: asyncio.Future, calls: list[asyncio.Future], what: str
    ) -> list:
        """Await both (`nccl_collective_wait`); a failure that leaves the group unusable marks it broken."""
        return await await_collective_and_calls(collective, calls, self._addresses, what, self._mark_broken)

    def _mark_broken(self) -> None:
        self.broken = True

    # --- recovery -----------------------------------------------------------------------------------
    async def needs_reconnect(self) -> bool:
        """True if not connected, broken, or a service no longer has the group (it restarted)."""
        if not self.connected:
            return True
        try:
            infos = await asyncio.gather(
                *(s.GetInfo(rollout_pb2.GetInfoRequest(), timeout=30) for s in self._stubs)
            )
        except grpc.aio.AioRpcError:
            return True
        return any(info.weight_sync_group != self.group_name for info in infos)

    # --- close ------------------------------------------------------------------------------------
    async def close(self) -> None:
        """Leave the group (its name becomes free again) and close the channels."""
        group, self._group, self._store = self._group, None, None
        if group is not None:
            if self._collectives_idle.is_set():
                await asyncio.to_thread(weight_group.destroy, group)
            else:  # destroy it once the stuck broadcast has timed out
                logger.warning(
                    "group %r is stuck in a broadcast; it is destroyed when that times out", self.group_name
                )
                idle, wait_s = self._collectives_idle, self.settings.timeout_s + 60

                def destroy_when_idle() -> None:
                    if idle.wait(wait_s):
                        weight_group.destroy(group)

                threading.Thread(target=destroy_when_idle, name="weight-sync-cleanup", daemon=True).start()
                self._collectives_idle = threading.Event()
                self._collectives_idle.set()
        self.broken = False
        await self._close_channels()

    async def _close_channels(self) -> None:
        for channel in self._channels:
            await channel.close()
        self._channels, self._stubs = [], []
