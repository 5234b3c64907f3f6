"""Push new weights to every rollout service, in parallel, without letting a dead one stall training.

Each member of the rollout pool has its own background worker that keeps trying to bring it to the
newest version: a failed push is retried with exponential backoff, and a service that joins, comes
back after being DOWN, or turns out to serve other weights (restarted) receives the *current*
weights (never a backlog of old versions); the pool admits it to prompts only once it has them.
`push()` hands the newest snapshot to every worker and waits until every READY service acknowledges
it or its deadline passes (`deadline_s` + bytes / `min_bytes_per_s`: big models take longer to
send, and each RPC gets the same deadline), then reports who is behind; training continues either
way. DOWN and draining services get no pushes (and are not waited for).

The snapshot is a detached CPU copy taken at push time, so the optimizer may change the live
parameters while slow services are still streaming. Transport: `grpo_common.weights.codec` buckets.

The snapshot is held only while something needs it, because it is a whole extra copy of the model
(params x push-dtype bytes: 1.84 GiB for a 0.5B model in fp32, on top of the update's peak):
- with `push.delta` it is the base the next snapshot is diffed against: always kept;
- otherwise it is freed as soon as every service that can take it has it (at the end of `push()`
  or when the last one behind catches up). Until the loop says the weights will change
  (`weights_will_change()`, before the next update) the pusher still holds the weights it was
  handed (the live parameters: no copy), so a service that (re)joins meanwhile gets the snapshot
  taken again from them (and checked against the version's fingerprint). At `weights_will_change()`
  a service still behind and not DOWN keeps (or re-takes) the snapshot so it can be resent during
  the update; a service that (re)joins while no copy of the version exists gets the next push.

What travels is the `PushSelection`'s (push_selection.py): a service that has none of our weights
yet (first push, joined, DOWN and back, resynced) gets `everything`, one that took an earlier push
only what has `changed` (for LoRA the merged targeted tensors). The snapshot is cumulative: each
push copies only the changed tensors and shares the untouched ones with the previous snapshot.

Delta pushes (`push.delta`, contract v1.3): the previous snapshot is kept anyway (it is what a
fresh service is sent until the next push), so each new snapshot is diffed against it once,
element by element on the bits (`grpo_common.weights.delta`), and a service that acknowledged
exactly the previous version, with the fingerprint we expected and `takes_deltas`, gets only the
changed tensors, most as small XOR payloads. Anyone else gets tensors whole, as above; so does a
service that refuses the delta (FAILED_PRECONDITION: it restarted or changed since), at once.

Fingerprints: each snapshot's fingerprint (`grpo_common.weights.fingerprint`, over the push-dtype
copy) is compared with the one the service returns after applying it. A mismatch (a lost,
misapplied or corrupted update) counts in `push/fingerprint_mismatch`, is logged naming the
service and version, takes the service out of the pool's rotation with its open streams (their
groups are dropped and the prompts re-sent, rollouts.pool.weights_mismatched) and sends it every
tensor whole; only once that matches does it get prompts again.
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
from grpo.v1 import rollout_pb2
from grpo_common.weights.codec import DEFAULT_BUCKET_BYTES, encode_state_dict_wire, update_weights_method
from grpo_common.weights.delta import StateDiff, diff_state_dicts
from grpo_common.weights.fingerprint import Fingerprint, fingerprint

from grpo_learner.config import RolloutConfig
from grpo_learner.rollouts.pool import Member, MemberState, RolloutPool
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
    delta_version: int | None = None  # serves exactly this version of ours and takes deltas on it


@dataclass(frozen=True)
class _Delta:
    base: rollout_pb2.DeltaBase  # the previous snapshot: its version and fingerprint
    diff: StateDiff  # its `changed` tensors against it


@dataclass
class _Snapshot:
    version: int
    # everything a fresh service needs, as of `version`; None once freed (nobody needed it)
    tensors: dict[str, torch.Tensor] | None
    names: tuple[str, ...]  # of `tensors`, kept when they are freed
    changed: tuple[str, ...]  # the names an up-to-date service needs
    fingerprint: Fingerprint  # of `tensors`: what a service must report after applying this version
    delta: _Delta | None = None  # with push.delta, from the previous snapshot

    @property
    def changed_is_everything(self) -> bool:
        return len(self.changed) == len(self.names)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.tensors or {}).values())


class WeightPusher:
    """`WeightPush` over gRPC. Use inside a running event loop; `await close()` when done.

    `addresses` is a list of host:port (the pusher then owns a pool of its own) or the
    `RolloutPool` shared with the `RolloutClient`.
    """

    def __init__(
        self,
        addresses: Sequence[str] | RolloutPool,
        *,
        deadline_s: float,
        min_bytes_per_s: float | None = None,
        bucket_bytes: int = DEFAULT_BUCKET_BYTES,
        dtype: torch.dtype | None = None,
        initial_backoff_s: float = 0.2,
        max_retry_backoff_s: float = 10.0,
        initial_version: int = 0,
        pool_settings: RolloutConfig | None = None,
        selection: PushSelection | None = None,
        delta: bool = False,
    ) -> None:
        self.selection = selection or FullWeights()
        self.delta = delta
        self.counter = PushCounter()
        self.deadline_s = deadline_s
        self.min_bytes_per_s = min_bytes_per_s
        self.bucket_bytes = bucket_bytes
        self.dtype = dtype
        self.initial_backoff_s = initial_backoff_s
        self.max_retry_backoff_s = max_retry_backoff_s
        if isinstance(addresses, RolloutPool):
            self.pool = addresses
        else:
            self.pool = RolloutPool(addresses, pool_settings)
        self.pool.retain()
        self._latest: _Snapshot | None = None
        self._mismatches_reported = self.pool.fingerprint_mismatches
        # the weights handed to the last push while they still are that version (no copy: the live
        # parameters), to take the snapshot again from; None from `weights_will_change()` on
        self._live: Mapping[str, torch.Tensor] | None = None
        self._taking = asyncio.Lock()  # one snapshot taken at a time, and never while weights change
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
        """Send `policy_version` to every service; wait at most deadline_s; return those still behind.

        `state_dict` must stay `policy_version`'s weights until `weights_will_change()` is awaited."""
        async with self._taking:
            previous = self._latest
            self._latest = await asyncio.to_thread(self._snapshot, state_dict, policy_version)
            self._live = state_dict
            if previous is not None:  # superseded: what it shares with the new one lives on there
                previous.tensors = None
        if self._latest.delta is not None:
            self.counter.delta_fraction = self._latest.delta.diff.fraction_changed
        self.pool.require_version(policy_version)
        for worker in self._workers.values():
            worker.wake.set()

        def all_ready_acked() -> bool:
            return all(m.version >= policy_version for m in self.pool.members if m.state is MemberState.READY)

        nbytes = self._latest.nbytes
        deadline = time.monotonic() + self._deadline_for(nbytes)
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
        self._free_if_unneeded()
        return behind

    async def weights_will_change(self) -> None:
        """The weights handed to the last push are about to change (the next update starts).

        A service still behind the newest version (and not DOWN) keeps its copy, taken now if it was
        freed, to be resent during the update; otherwise nothing of that version is held any more."""
        async with self._taking:
            snapshot = self._latest
            live = self._live
            if (
                snapshot is not None
                and snapshot.tensors is None
                and live is not None
                and self._waiting_for(snapshot)
            ):
                await asyncio.to_thread(self._retake, snapshot, live)
            self._live = None
            self._free_if_unneeded()

    @property
    def held_bytes(self) -> int:
        """Bytes of snapshot this pusher holds now (0 without push.delta once every service has it)."""
        return self._latest.nbytes if self._latest is not None else 0

    def _waiting_for(self, snapshot: _Snapshot) -> list[str]:
        """Services that can take `snapshot` and do not have it yet (DOWN ones get a later push)."""
        waiting = []
        for address, worker in self._workers.items():
            member = self.pool.get(address)
            if (
                member is not None
                and member.state is not MemberState.DOWN
                and member.version < snapshot.version
                and worker.rejected_version < snapshot.version
            ):
                waiting.append(address)
        return waiting

    def _free_if_unneeded(self) -> None:
        """Free the snapshot when nothing needs it: no delta base to keep, nobody waiting for it."""
        snapshot = self._latest
        if self.delta or snapshot is None or snapshot.tensors is None or self._waiting_for(snapshot):
            return
        logger.debug(
            "every service has v%d: its snapshot (%d bytes) is freed", snapshot.version, snapshot.nbytes
        )
        snapshot.tensors = None

    def _retake(self, snapshot: _Snapshot, live: Mapping[str, torch.Tensor]) -> bool:
        """Take `snapshot`'s tensors again from the weights it was taken from (blocking: in a thread).

        False (and nothing taken) when they no longer give its fingerprint: they changed without
        `weights_will_change()`; the services waiting for it get the next push instead."""
        tensors = snapshot_state_dict(self.selection.everything(live), self.dtype)
        if fingerprint(tensors) != snapshot.fingerprint:
            logger.error(
                "the weights of v%d changed before weights_will_change() was called: not resending them; "
                "services that need them get the next push",
                snapshot.version,
            )
            self._live = None
            return False
        snapshot.tensors = tensors
        return True

    async def _tensors_of(self, snapshot: _Snapshot) -> dict[str, torch.Tensor] | None:
        """`snapshot`'s tensors, taken again from the live weights if they were freed; None when no
        copy of that version exists any more (the weights changed since: wait for the next push)."""
        async with self._taking:
            if snapshot.tensors is None and self._live is not None and snapshot is self._latest:
                await asyncio.to_thread(self._retake, snapshot, self._live)
            return snapshot.tensors

    def _snapshot(self, state_dict: Mapping[str, torch.Tensor], version: int) -> _Snapshot:
        """The new snapshot, its fingerprint and (push.delta) its diff; blocking: runs in a thread."""
        previous = self._latest
        if previous is None or previous.tensors is None:  # first push, or the last one was freed
            tensors = snapshot_state_dict(self.selection.everything(state_dict), self.dtype)
            changed = tuple(self.selection.changed(state_dict))
            return _Snapshot(version, tensors, tuple(tensors), changed, fingerprint(tensors))
        fresh = snapshot_state_dict(self.selection.changed(state_dict), self.dtype)
        tensors = {**previous.tensors, **fresh}
        delta = None
        if self.delta and self.selection.lora_adapter is None:
            base = rollout_pb2.DeltaBase(
                policy_version=previous.version, fingerprint=previous.fingerprint.to_proto()
            )
            delta = _Delta(base, diff_state_dicts(previous.tensors, fresh))
        return _Snapshot(version, tensors, tuple(tensors), tuple(fresh), fingerprint(tensors), delta)

    def _deadline_for(self, nbytes: int) -> float:
        """deadline_s + nbytes / min_bytes_per_s: a push's time grows with what it sends."""
        if self.min_bytes_per_s is None:
            return self.deadline_s
        return self.deadline_s + nbytes / self.min_bytes_per_s

    def metrics(self) -> dict[str, float]:
        """The pool's and the push counter's, and `push/snapshot_bytes`: what the pusher holds now."""
        mismatches = self.pool.fingerprint_mismatches  # found by push replies and by probes
        self.counter.fingerprint_mismatch = mismatches - self._mismatches_reported
        self._mismatches_reported = mismatches
        return {**self.pool.metrics(), **self.counter.take(), "push/snapshot_bytes": float(self.held_bytes)}

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
            worker.delta_version = None
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
                worker.delta_version = None
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
                    worker.delta_version = None
                sent = await self._send_if_held(member, worker, snapshot)
                if sent is None:
                    break  # no copy of this version any more (or a newer one): the next push wakes us
                if sent:
                    backoff = self.initial_backoff_s
                    continue
                if worker.rejected_version >= version:
                    break
                with contextlib.suppress(TimeoutError):  # a newer push or a state change wakes us early
                    await asyncio.wait_for(worker.wake.wait(), backoff)
                worker.wake.clear()
                backoff = min(backoff * 2, self.max_retry_backoff_s)

    async def _send_if_held(self, member: Member, worker: _Worker, snapshot: _Snapshot) -> bool | None:
        """`_send` with `snapshot`'s tensors (taken again if they were freed); None when no copy of
        that version is left. Only this call references them: a worker waiting for the next push
        must not keep a freed snapshot alive."""
        tensors = await self._tensors_of(snapshot)
        if tensors is None or snapshot is not self._latest:
            return None
        return await self._send(member, worker, snapshot, tensors)

    async def _send(
        self, member: Member, worker: _Worker, snapshot: _Snapshot, tensors: Mapping[str, torch.Tensor]
    ) -> bool:
        """One push of `snapshot` (whose `tensors` these are) to one service; True when it should be
        sent the newest weights again at once (it took them, or it refused a delta or served other
        weights: then everything, now)."""
        status = worker.status
        version = snapshot.version
        start = time.perf_counter()
        member.push_in_flight = True
        delta = snapshot.delta
        if delta is not None and worker.delta_version == delta.base.policy_version:
            kind, items, nbytes = "delta", delta.diff.items, delta.diff.wire_bytes
            full_set, base = snapshot.changed_is_everything, delta.base
        else:
            names = snapshot.changed if worker.has_base else snapshot.names
            kind, base = ("changed" if worker.has_base else "everything"), None
            items = [(name, tensors[name]) for name in names]
            nbytes = sum(t.numel() * t.element_size() for _, t in items)
            full_set = len(names) == len(snapshot.names)
        try:
            # pre-serialised chunks: one copy of the tensor bytes instead of protobuf's three
            chunks = encode_state_dict_wire(
                items,
                version,
                self.bucket_bytes,
                lora_adapter=self.selection.lora_adapter,
                delta_base=base,
                full_set=full_set,
            )
            response = await update_weights_method(member.channel)(chunks, timeout=self._deadline_for(nbytes))
        except (grpc.aio.AioRpcError, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError):
                if (task := asyncio.current_task()) is not None and task.cancelling():
                    raise  # the worker is being stopped
                status.last_error = "CANCELLED: the channel was replaced while pushing"
            else:
                status.last_error = f"{exc.code().name}: {exc.details()}"
            refused_delta = kind == "delta" and isinstance(exc, grpc.aio.AioRpcError)
            if refused_delta and exc.code() == StatusCode.FAILED_PRECONDITION:
                logger.info(
                    "rollout %s refused the delta to v%d (%s); sending every tensor whole",
                    member.address,
                    version,
                    exc.details(),
                )
                worker.has_base = False
                worker.delta_version = None
                return True
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
        self.counter.bytes += nbytes
        self.counter.tensors += len(items)
        self.counter.full_pushes += kind != "delta"
        reported = Fingerprint.from_proto(response.fingerprint) if response.HasField("fingerprint") else None
        if reported is not None and reported != snapshot.fingerprint:
            return self._mismatched(member, worker, snapshot, reported, kind)
        status.failures = 0
        status.last_error = ""
        status.last_push_seconds = time.perf_counter() - start
        worker.has_base = True
        # without a fingerprint (a service from before v1.3) it cannot be proven to hold our bits
        worker.delta_version = version if response.takes_deltas and reported is not None else None
        self.pool.weights_delivered(member, response.policy_version, reported)
        self._progress.set()
        if snapshot is self._latest:
            self._free_if_unneeded()
        logger.debug(
            "pushed v%d to %s (%s, %d bytes) in %.2f s",
            version,
            member.address,
            kind,
            nbytes,
            status.last_push_seconds,
        )
        return True

    def _mismatched(
        self, member: Member, worker: _Worker, snapshot: _Snapshot, reported: Fingerprint, kind: str
    ) -> bool:
        """The service applied our push but serves other bits: resync it before it gets prompts."""
        worker.has_base = False
        worker.delta_version = None
        self.pool.weights_mismatched(member)
        logger.error(
            "rollout %s serves other weights than version %d after a %s push (fingerprint %s, expected %s): "
            "a lost, misapplied or corrupted update; its groups since are dropped and it gets every tensor "
            "whole before more prompts",
            member.address,
            snapshot.version,
            kind,
            reported,
            snapshot.fingerprint,
        )
        if kind == "everything":  # even every tensor whole does not make it serve our bits
            worker.rejected_version = snapshot.version
            worker.status.last_error = (
                f"serves fingerprint {reported} after every tensor of v{snapshot.version} was pushed, "
                f"expected {snapshot.fingerprint}: a rollout model that does not hold what it is sent?"
            )
            return False
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
