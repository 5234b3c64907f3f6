"""What the rollout pool reports each step: how many services are in each state, and how idle they were.

Kept out of the pool's membership and transition logic because it only reads the members (and moves
each one's utilisation mark forward), once per logged step.
"""

from __future__ import annotations

from collections.abc import Iterable

from grpo_learner.rollouts.member import Member, MemberState


def pool_metrics(members: Iterable[Member]) -> dict[str, float]:
    """How many services are in each state ("rollout/services_ready", ...) and how idle they were.

    `rollout/idle_fraction` covers the time since the previous call, from the services' own
    clocks (GetInfo's uptime/busy seconds at the probes closest to the two calls), summed over
    the services that reported both times: `1 - Σ Δbusy / Σ Δuptime`. It is left out until two
    probes with those figures (v1.1) have come back.
    """
    counts = dict.fromkeys(MemberState, 0)
    busy = uptime = 0.0
    for member in members:
        counts[member.state] += 1
        mark, latest = member.busy_mark, member.busy_latest
        if mark is not None and latest is not None and latest[0] > mark[0]:
            uptime += latest[0] - mark[0]
            busy += latest[1] - mark[1]
        member.busy_mark = latest
    figures = {f"rollout/services_{state.value}": float(n) for state, n in counts.items()}
    if uptime > 0:
        figures["rollout/idle_fraction"] = min(1.0, max(0.0, 1.0 - busy / uptime))
    return figures
