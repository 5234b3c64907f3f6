"""OpenMP threads that sleep as soon as they are idle, for processes that take turns on the same cores.

torch's CPU kernels run on an OpenMP thread pool whose threads, by default, spin for a while after
each parallel region before they sleep. `grpo train` and `grpo eval` on a CPU machine run the
learner next to their own rollout and reward services, and the processes take turns: the rollout
generates while the learner waits, then the learner trains while the rollout waits. A process that
has just finished keeps its threads spinning on the cores the next one needs. With
`OMP_WAIT_POLICY=PASSIVE` they sleep at once. Measured on the 2-core box (vs_trl's 0.8M shape,
max_staleness 0, two alternating pairs, load 1.1-1.7): 0.259 / 0.244 s per step spinning, 0.229 /
0.224 s passive (generate 0.095 -> 0.088 s, update 0.114 -> 0.100 s).

The OpenMP runtime reads the variable once, when it loads (at `import torch`), so the CLI sets it
before anything imports torch, and the service processes inherit it. A value already in the
environment wins: a dedicated CPU machine may prefer `ACTIVE`.
"""

from __future__ import annotations

from collections.abc import MutableMapping

VARIABLE = "OMP_WAIT_POLICY"


def prefer_passive_waiting(environ: MutableMapping[str, str]) -> str:
    """Set OMP_WAIT_POLICY=PASSIVE in `environ` unless it is set; return the value in effect."""
    return environ.setdefault(VARIABLE, "PASSIVE")
