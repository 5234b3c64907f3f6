"""The training loop's face of the NCCL weight sync, shaped like `WeightPusher` so the loop can take either.

`push(weights, version)` returns the services left behind (always none: either every service took
the version, or it raises WeightSyncError after one reconnect-and-retry, and the run stops with
that message rather than train on against weights nobody serves). `resync(address)` is what the
rollout client calls when a service answers FAILED_PRECONDITION (it restarted, or a failed update
left its engines unusable): the last pushed weights go out again, in the background, over a group
formed anew if that service lost its rank.

What travels is the `PushSelection`'s: `everything` over a newly formed group (the first push,
and after any reconnect: a service that lost its rank restarted), else only what has `changed`
(for LoRA the merged targeted tensors). A failed push is retried once over a group formed anew.

The last pushed mapping is kept by reference, not copied: with `push.every` > 1 a resync between
two pushes sends the live weights under the last pushed version (the gRPC pusher keeps a CPU copy
instead; a copy of a model that needs NCCL would cost what NCCL saves).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence

import torch
from grpo_common.channel import ChannelConfig

from grpo_learner.config import PushConfig
from grpo_learner.rollouts.pool import RolloutPool
from grpo_learner.weight_sync.nccl_sync import NcclWeightSync, WeightSyncError
from grpo_learner.weight_sync.push_protocol import PushCounter, ServiceStatus
from grpo_learner.weight_sync.push_selection import FullWeights, PushSelection

logger = logging.getLogger(__name__)


class NcclWeightPusher:
    """`WeightPush` over NCCL. Use inside a running event loop; `await close()` when done."""

    def __init__(
        self,
        addresses: Sequence[str] | RolloutPool,
        push: PushConfig,
        channel: ChannelConfig | None = None,
        *,
        selection: PushSelection | None = None,
    ) -> None:
        self.sync = NcclWeightSync.from_config(push, channel)
        self.selection = selection or FullWeights()
        self.counter = PushCounter()
        # The group is formed once over the listed services (config refuses an addresses file).
        self.pool = addresses if isinstance(addresses, RolloutPool) else None
        if self.pool is not None:
            self.pool.retain()
        self._addresses = list(self.pool.addresses if self.pool is not None else addresses)
        self._latest: tuple[int, Mapping[str, torch.Tensor]] | None = None
        self._lock = asyncio.Lock()
        self._resend: asyncio.Task[None] | None = None

    async def push(self, weights: Mapping[str, torch.Tensor], policy_version: int) -> list[ServiceStatus]:
        async with self._lock:
            await self._push_recovering(weights, policy_version)
            self._latest = (policy_version, weights)
        return []

    async def _push_recovering(
        self, weights: Mapping[str, torch.Tensor], version: int, everything: bool = False
    ) -> None:
        """Push, after (re)forming the group if needed; once more over a new group if it fails.

        Raises WeightSyncError if the second try fails too: the caller must not advance its version.
        """
        for attempt in (1, 2):
            fresh_group = attempt == 2 or await self.sync.needs_reconnect()
            if fresh_group:
                await self.sync.close()
                await self.sync.connect(self._addresses)
            whole = everything or fresh_group
            pushing = self.selection.everything(weights) if whole else self.selection.changed(weights)
            try:
                report = await self.sync.push(pushing.items(), version)
            except WeightSyncError as exc:
                if attempt == 2:
                    raise
                logger.warning(
                    "push of version %d failed (%s); reconnecting and trying once more", version, exc
                )
                continue
            self.counter.bytes += report.bytes
            self.counter.tensors += report.tensors
            return

    async def weights_will_change(self) -> None:
        """Nothing to copy: a resync re-sends the weights `push` was handed as they are then."""

    def metrics(self) -> dict[str, float]:
        pool = self.pool.metrics() if self.pool is not None else {}
        return {**pool, **self.counter.take()}

    def resync(self, address: str) -> None:
        if self._latest is None or (self._resend is not None and not self._resend.done()):
            return
        logger.info("rollout %s needs the current weights again; re-sending them over the group", address)
        self._resend = asyncio.get_running_loop().create_task(self._push_latest())

    async def _push_latest(self) -> None:
        async with self._lock:
            assert self._latest is not None
            version, weights = self._latest
            try:
                await self._push_recovering(weights, version, everything=True)
            except WeightSyncError:
                logger.exception("re-sending version %d failed; the next push tries again", version)

    async def close(self) -> None:
        if self._resend is not None:
            self._resend.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resend
        await self.sync.close()
        if self.pool is not None:
            await self.pool.release()
