"""One rollout service as the learner sees it: its channel, load, weights, failures and state.

The states, and what moves a member between them (the pool makes every move; see rollouts.pool):

    PENDING  -- joined, returned after being down, or found serving other weights: it gets no
                prompts until it answered a health probe and holds the current weights (the
                pusher sends them; with no pusher or nothing pushed yet, health is enough)
    READY    -- receives prompts (and every new push)
    DOWN     -- failed `unhealthy_after` probes in a row or reports NOT_SERVING: its open
                streams are abandoned (the client re-sends their prompts elsewhere), the pusher
                stops trying; probed on fresh channels until it answers, then PENDING again
    DRAINING -- removed from the addresses file: no new prompts or weights; its open streams
                finish (or are re-sent if it dies), then it leaves the pool and its channel closes

    PENDING --healthy + current weights--> READY --probes fail--> DOWN --answers--> PENDING
    any --removed--> DRAINING --last stream done--> (gone)

This module is the record and its states; rollouts.pool holds the members and makes every transition,
so that the client, the pusher and the monitor never disagree about who gets prompts or weights.
"""

from __future__ import annotations

import asyncio
import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2_grpc
from grpo.v1 import rollout_pb2, rollout_pb2_grpc
from grpo_common.weights.fingerprint import Fingerprint


class MemberState(enum.Enum):
    PENDING = "pending"
    READY = "ready"
    DOWN = "down"
    DRAINING = "draining"


@dataclass(eq=False)
class Member:
    address: str
    channel: grpc.aio.Channel
    stub: rollout_pb2_grpc.RolloutServiceStub
    health: health_pb2_grpc.HealthStub
    state: MemberState
    permanent: bool  # from rollout.addresses: the addresses file never removes it
    # Weights: the version the pusher got acknowledged (-1: unknown, it must be sent the current ones).
    version: int = -1
    version_set_at: float = -math.inf
    # The fingerprint the pusher expects for `version` (None: unknown, e.g. an NCCL push): a probe
    # reporting another one for that version finds it serving other weights (corrupted).
    fingerprint: Fingerprint | None = None
    # Bumped when the service was found serving other weights than pushed: groups from streams
    # opened before are dropped (the client compares), never trained on.
    weights_epoch: int = 0
    push_in_flight: bool = False
    healthy_seen: bool = False  # a probe or a push succeeded since it (re)joined
    # Load: what GetInfo last reported, and this learner's prompts sent and not yet received.
    reported_in_flight: int = 0
    reported_version: int = -1
    own_at_probe: int = 0  # our outstanding prompts when that probe was sent
    info_at: float = -math.inf
    outstanding: int = 0
    # Utilisation: GetInfo's (uptime_seconds, busy_seconds) at the last metrics() and at the last probe.
    busy_mark: tuple[float, float] | None = None
    busy_latest: tuple[float, float] | None = None
    # Failures.
    probe_failures: int = 0
    stream_failures: int = 0
    last_stream_failure: float = -math.inf
    last_error: str = ""
    # Set when the service goes DOWN: the client abandons the streams it opened before.
    down: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def on_channel(
        cls, address: str, channel: grpc.aio.Channel, state: MemberState, permanent: bool
    ) -> Member:
        """A new member talking over `channel`; one that starts READY counts as healthy."""
        return cls(
            address=address,
            channel=channel,
            stub=rollout_pb2_grpc.RolloutServiceStub(channel),
            health=health_pb2_grpc.HealthStub(channel),
            state=state,
            permanent=permanent,
            healthy_seen=state is MemberState.READY,
        )

    def use_channel(self, channel: grpc.aio.Channel) -> grpc.aio.Channel:
        """Talk over `channel` from now on; returns the old one, for the caller to close."""
        old = self.channel
        self.channel = channel
        self.stub = rollout_pb2_grpc.RolloutServiceStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)
        return old

    def record_info(self, info: rollout_pb2.RolloutInfo, own_at_start: int) -> None:
        """Take a GetInfo answer's load and clock (`own_at_start`: our prompts out there when sent)."""
        self.reported_in_flight = info.in_flight_prompts
        self.reported_version = info.policy_version
        self.own_at_probe = own_at_start
        self.info_at = time.monotonic()
        if info.uptime_seconds > 0:  # 0: a service from before v1.1
            latest = (info.uptime_seconds, info.busy_seconds)
            if self.busy_latest is not None and latest[0] < self.busy_latest[0]:
                self.busy_mark = None  # it restarted: its clock began again
            self.busy_latest = latest

    def move_to(self, state: MemberState) -> bool:
        """Enter `state`; False when already there. Entering DOWN sets `down` (the client abandons the
        streams it opened before); leaving it, or a set event, gives later streams a fresh one."""
        if self.state is state:
            return False
        previous, self.state = self.state, state
        if state is MemberState.DOWN:
            self.down.set()
        elif previous is MemberState.DOWN or self.down.is_set():
            self.down = asyncio.Event()
        return True

    @property
    def is_down(self) -> bool:
        return self.state is MemberState.DOWN

    def load(self) -> int:
        """Prompts this service is working on: others' (from GetInfo) plus ours (known exactly).

        GetInfo lags and counts our own prompts too, so ours at probe time are subtracted from the
        report and ours now are added back.
        """
        return max(0, self.reported_in_flight - self.own_at_probe) + self.outstanding


Listener = Callable[[Member], None]
