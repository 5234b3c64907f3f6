"""The one face of a weight push, whichever transport carries the bytes.

The training loop, the rollout client and the run assembly see only `WeightPush`; which transport
(gRPC byte streams, an NCCL group into SGLang) is behind it is `push.transport`, resolved by
`transports.build_pusher` from a registry. Every pusher works over the one `RolloutPool` the rollout
client also uses, so membership (who is READY, who left) is decided in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass
class ServiceStatus:
    address: str
    acked_version: int = 0  # the version the service confirmed it uses (-1: unknown)
    failures: int = 0  # consecutive failed attempts
    last_error: str = ""
    last_push_seconds: float = 0.0


class WeightPush(Protocol):
    async def push(self, weights: Mapping[str, torch.Tensor], policy_version: int) -> list[ServiceStatus]:
        """Send `policy_version`; return the services still behind when the push gives up waiting."""

    def resync(self, address: str) -> None:
        """`address` serves other weights than we pushed (it restarted): send it the newest again."""

    def metrics(self) -> dict[str, float]:
        """The step's metrics about the push and the services (`rollout/services_ready`, ...)."""

    async def close(self) -> None: ...
