"""Who is in the rollout pool: the one membership the client, the pusher and the monitor share.

The pool holds one `Member` per service (rollouts.member draws the states) and makes every transition
from what it is told: the addresses file adds and removes services, the monitor reports probes, the
client reports streams and stale refusals, the pusher reports delivered weights. Services given at
start-up (`rollout.addresses`, and the addresses file's first reading) start READY, as a single
service always did. Because the client and the pusher read and change the same members, they never
disagree about who gets prompts and who needs weights.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence

import grpc
from grpo.v1 import rollout_pb2
from grpo_common.addresses import parse_address
from grpo_common.channel import create_channel
from grpo_common.weights.fingerprint import Fingerprint

from grpo_learner.config import RolloutConfig
from grpo_learner.rollouts.address_book import AddressBook
from grpo_learner.rollouts.health_monitor import PoolMonitor, ProbeResult
from grpo_learner.rollouts.member import Listener, Member, MemberState
from grpo_learner.rollouts.pool_metrics import pool_metrics

logger = logging.getLogger(__name__)

__all__ = ["Member", "MemberState", "RolloutPool"]


# How the pool picks among services, beyond what `[rollout]` sets (probes, addresses file):
FAILURE_COOLDOWN_S = 10.0  # a failed stream makes a service second choice this long
LOAD_MAX_AGE_S = 0.5  # without background probes: refresh a load older than this ...
LOAD_TIMEOUT_S = 0.25  # ... with this deadline, before assigning prompts


class RolloutPool:
    """Use inside a running event loop. Users `retain()` it and `await release()` it; the last
    release closes it (or call `await close()` when you own it alone)."""

    def __init__(
        self,
        addresses: Sequence[str],
        settings: RolloutConfig | None = None,
    ) -> None:
        """`settings`: the `[rollout]` section (probes, addresses file, channel), read, never copied."""
        self.settings = settings or RolloutConfig()
        self.channel_config = self.settings.channel
        self.required_version: int | None = None  # the newest pushed version; None: nothing pushed
        self.fingerprint_mismatches = 0  # services found serving other weights than pushed, ever
        self._members: dict[str, Member] = {}
        self._listeners: list[Listener] = []
        self._closing: set[asyncio.Task] = set()
        self._users = 0
        self._closed = False
        for address in addresses:
            self._members[address] = self._new_member(parse_address(address), MemberState.READY, True)
        self.monitor = PoolMonitor(self, self.settings.probe_interval_s, self.settings.probe_timeout_s)
        self.address_book: AddressBook | None = None
        if self.settings.addresses_file is not None:
            self.address_book = AddressBook(
                self.settings.addresses_file, self, self.settings.addresses_poll_s
            )
            parsed = self.address_book.read()
            for address in parsed.addresses if parsed else []:
                if address not in self._members:
                    self._members[address] = self._new_member(address, MemberState.READY, False)
        if not self._members:
            source = f" and {self.settings.addresses_file} lists none" if self.address_book else ""
            logger.warning("no rollout service yet (rollout.addresses is empty%s)", source)

    @classmethod
    def from_config(cls, rollout: RolloutConfig, addresses: Sequence[str] | None = None) -> RolloutPool:
        """The pool of `rollout.addresses` (or `addresses`) plus `rollout.addresses_file`."""
        return cls(rollout.addresses if addresses is None else addresses, rollout)

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start background probes and the addresses-file watcher (idempotent)."""
        if self._closed:
            raise RuntimeError("this rollout pool is closed")
        self.monitor.start()
        if self.address_book is not None:
            self.address_book.start()

    def retain(self) -> None:
        self._users += 1
        self.start()

    async def release(self) -> None:
        self._users -= 1
        if self._users <= 0:
            await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.monitor.close()
        if self.address_book is not None:
            await self.address_book.close()
        for member in list(self._members.values()):
            await member.channel.close()
        self._members.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    # --- membership ---------------------------------------------------------------------------

    @property
    def members(self) -> list[Member]:
        return list(self._members.values())

    @property
    def addresses(self) -> list[str]:
        """Members that are not being drained, in the order they joined."""
        return [m.address for m in self._members.values() if m.state is not MemberState.DRAINING]

    def get(self, address: str) -> Member | None:
        return self._members.get(address)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def add(self, address: str, *, permanent: bool = False) -> Member:
        """A service joins: PENDING until healthy and holding the current weights."""
        address = parse_address(address)
        member = self._members.get(address)
        if member is not None:
            member.permanent |= permanent
            if member.state is MemberState.DRAINING:
                member.version = -1
                member.healthy_seen = not self.monitor.running
                logger.info("rollout %s is listed again: it stops draining and rejoins", address)
                self._set_state(member, MemberState.PENDING)
                self._evaluate(member)
            return member
        member = self._new_member(address, MemberState.PENDING, permanent)
        member.healthy_seen = not self.monitor.running  # no probes: trust it until a stream fails
        self._members[address] = member
        logger.info("rollout %s joins the pool: it gets the current weights, then prompts", address)
        self._notify(member)
        self._evaluate(member)
        return member

    def remove(self, address: str) -> None:
        """A service leaves: no new prompts or weights; gone once its open streams end."""
        member = self._members.get(address)
        if member is None or member.state is MemberState.DRAINING:
            return
        logger.info(
            "rollout %s is removed: draining (%d prompt(s) still out there)", address, member.outstanding
        )
        self._set_state(member, MemberState.DRAINING)
        self._finalize_if_drained(member)

    def sync_listed(self, addresses: list[str]) -> None:
        """Make the file-listed members exactly `addresses` (permanent members always stay)."""
        listed = set(addresses)
        for address in addresses:
            member = self._members.get(address)
            if member is None or member.state is MemberState.DRAINING:
                self.add(address)
        for member in list(self._members.values()):
            if not member.permanent and member.address not in listed:
                self.remove(member.address)
        if not any(m.state is not MemberState.DRAINING for m in self._members.values()):
            logger.warning("the rollout pool is empty: no prompt can be generated until a service is listed")

    # --- what the client asks -----------------------------------------------------------------

    def candidates(self, min_version: int = 0) -> list[Member]:
        """READY members for new prompts: those known to hold `min_version` if any, and among
        them those without a recent failed stream if any."""
        ready = [m for m in self._members.values() if m.state is MemberState.READY]
        current = [m for m in ready if max(m.version, m.reported_version) >= min_version]
        ready = current or ready
        now = time.monotonic()

        def recent_failures(member: Member) -> int:
            fresh = now - member.last_stream_failure < FAILURE_COOLDOWN_S
            return member.stream_failures if fresh else 0

        if not ready:
            return []
        fewest = min(recent_failures(m) for m in ready)
        return [m for m in ready if recent_failures(m) == fewest]

    async def refresh_loads(self, members: Sequence[Member]) -> None:
        """Without background probes, ask GetInfo of members whose figure is old (short deadline)."""
        if self.monitor.running:
            return
        now = time.monotonic()
        old = [m for m in members if now - m.info_at > LOAD_MAX_AGE_S]
        if old:
            await self.monitor.probe_loads(old, LOAD_TIMEOUT_S)

    def metrics(self) -> dict[str, float]:
        """How many services are in each state and how idle they were (see rollouts.pool_metrics)."""
        return pool_metrics(self._members.values())

    def describe(self) -> str:
        if not self._members:
            return "the pool is empty"
        return ", ".join(f"{m.address} {m.state.value}" for m in self._members.values())

    # --- what the client reports --------------------------------------------------------------

    def stream_ended(self, member: Member, failed: bool) -> None:
        if failed:
            member.stream_failures += 1
            member.last_stream_failure = time.monotonic()
        else:
            member.stream_failures = 0
        self._finalize_if_drained(member)

    def mark_stale(self, address: str) -> None:
        """The service refused a request for being behind (FAILED_PRECONDITION): it may have
        restarted. With a pusher it gets the current weights before more prompts."""
        member = self._members.get(address)
        if member is None or self.required_version is None:
            return
        member.version = -1
        if member.state is MemberState.READY:
            logger.info("rollout %s is behind the requested policy version: resending weights", address)
            self._set_state(member, MemberState.PENDING)
        else:
            self._notify(member)

    # --- what the pusher reports --------------------------------------------------------------

    def require_version(self, version: int) -> None:
        """A push of `version` started: members that (re)join need it before prompts."""
        self.required_version = version

    def weights_mismatched(self, member: Member) -> None:
        """The service serves other bits than we pushed (its push reply or a probe says so): it gets
        no prompts until a push of every tensor matches, its open streams are abandoned (their
        prompts are re-sent) and groups it already streamed are dropped (`weights_epoch`). Counted
        in `fingerprint_mismatches` (the pusher reports them as push/fingerprint_mismatch)."""
        self.fingerprint_mismatches += 1
        member.version = -1
        member.fingerprint = None
        member.weights_epoch += 1
        member.down.set()  # the client abandons the streams opened before
        member.down = asyncio.Event()
        if member.state is MemberState.READY:
            self._set_state(member, MemberState.PENDING)
        else:
            self._notify(member)

    def weights_delivered(self, member: Member, version: int, fingerprint: Fingerprint | None = None) -> None:
        """`member` acknowledged `version`; `fingerprint`: what it must report for it (None: unknown)."""
        if version >= member.version:
            member.fingerprint = fingerprint
        member.version = max(member.version, version)
        member.version_set_at = time.monotonic()
        member.healthy_seen = True
        self._evaluate(member)
        self._notify(member)

    # --- what the monitor reports -------------------------------------------------------------

    def record_probe(self, member: Member, result: ProbeResult) -> None:
        if self._members.get(member.address) is not member:
            return  # left the pool while the probe ran
        if result.info is not None:
            member.record_info(result.info, result.own_at_start)
            self._check_version(member, result.info.policy_version, result.started)
            self._check_fingerprint(member, result.info, result.started)
        if result.load_only:
            return
        if result.ok:
            member.probe_failures = 0
            member.last_error = ""
            if member.state is MemberState.DOWN:
                logger.info(
                    "rollout %s answers again: it gets the current weights, then prompts", member.address
                )
                member.version = -1
                member.stream_failures = 0
                member.healthy_seen = True
                self._set_state(member, MemberState.PENDING)
            member.healthy_seen = True
            self._evaluate(member)
            return
        member.probe_failures += 1
        member.last_error = result.error
        if result.not_serving or member.probe_failures >= self.settings.unhealthy_after:
            self._mark_down(member, result.error)

    def replace_channel(self, member: Member, channel: grpc.aio.Channel) -> None:
        """A DOWN member answered on a fresh channel: use it (gRPC's reconnect backoff on the old
        one can reach minutes) and close the old one."""
        self._close_later(member.use_channel(channel))

    def new_channel(self, address: str) -> grpc.aio.Channel:
        return create_channel(address, self.channel_config)

    # --- internals ----------------------------------------------------------------------------

    def _new_member(self, address: str, state: MemberState, permanent: bool) -> Member:
        return Member.on_channel(address, self.new_channel(address), state, permanent)

    def _check_version(self, member: Member, reported: int, probe_started: float) -> None:
        """A service serving other weights than it acknowledged has restarted (or was changed
        behind our back): it must get the current weights before more prompts."""
        if (
            self.required_version is None
            or member.version < 0
            or member.version_set_at == -math.inf  # assumed, never acknowledged: nothing to compare
            or member.push_in_flight
            or probe_started < member.version_set_at
            or reported == member.version
        ):
            return
        logger.warning(
            "rollout %s serves policy version %d but acknowledged %d (restarted?): it gets the current "
            "weights before more prompts",
            member.address,
            reported,
            member.version,
        )
        member.version = -1
        if member.state is MemberState.READY:
            self._set_state(member, MemberState.PENDING)
        else:
            self._notify(member)

    def _check_fingerprint(self, member: Member, info: rollout_pb2.RolloutInfo, probe_started: float) -> None:
        """A service that reports, for the version it acknowledged, another fingerprint than the one
        pushed serves corrupted weights (a rollout re-reads its fingerprint now and then, see its
        limits.fingerprint_recheck_s): resynced with every tensor whole, like a push reply's mismatch."""
        if (
            member.fingerprint is None
            or not info.HasField("fingerprint")
            or member.push_in_flight
            or probe_started < member.version_set_at
            or info.policy_version != member.version
        ):
            return
        reported = Fingerprint.from_proto(info.fingerprint)
        if reported == member.fingerprint:
            return
        logger.error(
            "rollout %s reports fingerprint %s for version %d, which was pushed as %s: its weights changed "
            "after the update (corrupted?); its groups since are dropped and it gets every tensor whole "
            "before more prompts",
            member.address,
            reported,
            member.version,
            member.fingerprint,
        )
        self.weights_mismatched(member)

    def _mark_down(self, member: Member, reason: str) -> None:
        if member.state is MemberState.DRAINING:
            member.down.set()  # abandon its streams; it leaves once they are re-sent
            return
        if member.state is MemberState.DOWN:
            return
        logger.warning(
            "rollout %s is unhealthy (%s): no more prompts; its unfinished prompts are re-sent elsewhere",
            member.address,
            reason,
        )
        member.version = -1  # whatever it serves when it is back, it gets the current weights
        self._set_state(member, MemberState.DOWN)

    def _evaluate(self, member: Member) -> None:
        if (
            member.state is MemberState.PENDING
            and member.healthy_seen
            and (self.required_version is None or member.version >= self.required_version)
        ):
            logger.info(
                "rollout %s is ready (policy version %d): it receives prompts", member.address, member.version
            )
            self._set_state(member, MemberState.READY)

    def _set_state(self, member: Member, state: MemberState) -> None:
        if member.move_to(state):
            self._notify(member)

    def _finalize_if_drained(self, member: Member) -> None:
        if member.state is not MemberState.DRAINING or member.outstanding > 0:
            return
        if self._members.get(member.address) is member:
            del self._members[member.address]
            logger.info("rollout %s has drained and left the pool", member.address)
            self._close_later(member.channel)
            self._notify(member)

    def _close_later(self, channel: grpc.aio.Channel) -> None:
        task = asyncio.get_running_loop().create_task(channel.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _notify(self, member: Member) -> None:
        for listener in list(self._listeners):
            try:
                listener(member)
            except Exception:
                logger.exception("a rollout pool listener failed on %s", member.address)
