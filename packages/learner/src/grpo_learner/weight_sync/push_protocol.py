"""The one face of a weight push, whichever transport carries the bytes.

The training loop, the rollout client and the run assembly see only `WeightPush`; which transport
(gRPC byte streams, an NCCL group into SGLang) is behind it is `push.transport`, resolved by
`transports.build_pusher` from a registry. Every pusher works over the one `RolloutPool` the rollout
client also uses, so membership (who is READY, who left) is decided in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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


@dataclass
class PushCounter:
    """A step's push metrics, summed over services since the last `take()`, so a run shows what a
    push costs: `push/bytes` (tensor bytes delivered; a delta push's encoded payloads), `push/tensors`,
    `push/full_pushes` (pushes that sent tensors whole: first push, restart, rejoin, a refused
    delta, delta pushes off), `push/fingerprint_mismatch` (services found serving other weights
    than pushed), and, with delta pushes on, `push/delta_fraction` (elements changed / all, of the
    step's newest version)."""

    bytes: int = 0
    tensors: int = 0
    full_pushes: int = 0
    fingerprint_mismatch: int = 0
    delta_fraction: float | None = None

    def add(self, tensors: Iterable[torch.Tensor]) -> None:
        for tensor in tensors:
            self.bytes += tensor.numel() * tensor.element_size()
            self.tensors += 1

    def take(self) -> dict[str, float]:
        taken = {
            "push/bytes": float(self.bytes),
            "push/tensors": float(self.tensors),
            "push/full_pushes": float(self.full_pushes),
            "push/fingerprint_mismatch": float(self.fingerprint_mismatch),
        }
        if self.delta_fraction is not None:
            taken["push/delta_fraction"] = self.delta_fraction
        self.bytes = self.tensors = self.full_pushes = self.fingerprint_mismatch = 0
        self.delta_fraction = None
        return taken


class WeightPush(Protocol):
    async def push(self, weights: Mapping[str, torch.Tensor], policy_version: int) -> list[ServiceStatus]:
        """Send `policy_version`; return the services still behind when the push gives up waiting."""

    async def weights_will_change(self) -> None:
        """The weights handed to the last `push` are about to change (an update starts): a pusher
        that reads them again later (to resend them) must copy what it still needs now."""

    def resync(self, address: str) -> None:
        """`address` serves other weights than we pushed (it restarted): send it the newest again."""

    def metrics(self) -> dict[str, float]:
        """The step's metrics about the push and the services (`rollout/services_ready`, ...)."""

    async def close(self) -> None: ...
