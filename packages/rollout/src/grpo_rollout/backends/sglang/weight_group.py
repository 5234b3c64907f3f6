"""The SGLang workers' membership in a learner's NCCL weight-update group.

Why its own module: which ranks each worker takes (its tensor-parallel GPUs, or none with data or
pipeline parallelism), joining every worker at its rank offset, and cleaning up after a partial
join or an earlier learner's group are one job, apart from generating and loading weights
(`generator`) and from the update in progress over the group (`distributed`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from grpo_rollout.backends.contract import WeightUpdateError
from grpo_rollout.backends.sglang.fleet import failure_kind, failures, who
from grpo_rollout.backends.sglang.http import SGLangError, SGLangServer

logger = logging.getLogger(__name__)


def sync_ranks_of(server_info: Mapping[str, object]) -> int:
    """Ranks one SGLang server takes in a weight-update group: its tensor-parallel GPUs.

    SGLang joins each TP rank at rank_offset + tp_rank and refuses distributed updates with data
    parallelism (unless DP attention) or pipeline stages, so such a server cannot take part (0).
    """
    tp = int(server_info.get("tp_size", 1) or 1)  # type: ignore[arg-type]
    dp = int(server_info.get("dp_size", 1) or 1)  # type: ignore[arg-type]
    pp = int(server_info.get("pp_size", 1) or 1)  # type: ignore[arg-type]
    if pp > 1 or (dp > 1 and not server_info.get("enable_dp_attention")):
        return 0
    return tp


async def sync_ranks(worker: SGLangServer) -> int:
    """`sync_ranks_of` the worker's /server_info; 0 (and a warning) when it cannot be read."""
    try:
        return sync_ranks_of(await worker.server_info())
    except SGLangError as exc:
        logger.warning("%s: %s; this worker cannot take part in NCCL weight updates", worker.url, exc)
        return 0


@dataclass
class WeightGroupMembership:
    """Which group the workers have joined (`name`, "" for none) and the ranks each one takes."""

    workers: Sequence[SGLangServer]
    ranks_per_worker: list[int]
    name: str = ""

    def ranks(self) -> int:
        """GPUs of all workers, or 0 if any worker cannot join a group (DP, PP, unknown)."""
        return 0 if 0 in self.ranks_per_worker else sum(self.ranks_per_worker)

    async def join(
        self,
        master_address: str,
        master_port: int,
        rank_offset: int,
        world_size: int,
        group_name: str,
        backend: str,
    ) -> int:
        """Join every worker (see `SGLangGenerator.init_weights_update_group`); the ranks taken."""
        ranks = self.ranks()
        if ranks == 0:
            raise WeightUpdateError(
                f"workers {[w.url for w in self.workers]} report GPUs {self.ranks_per_worker}: a worker "
                "with data or pipeline parallelism cannot join a weight-update group; run one SGLang "
                "server per DP replica behind a router, or push weights with UpdateWeights"
            )
        if rank_offset < 1 or world_size < rank_offset + ranks:
            raise ValueError(
                f"rank_offset {rank_offset} and world_size {world_size} cannot hold {ranks} rank(s)"
            )
        stale = {group_name, self.name} - {""}  # this name, and the group of an earlier learner
        await asyncio.gather(*(_forget_group(w, name) for w in self.workers for name in stale))
        self.name = ""
        offsets = [rank_offset + sum(self.ranks_per_worker[:i]) for i in range(len(self.workers))]
        results = await asyncio.gather(
            *(
                w.init_weights_update_group(
                    master_address, master_port, offset, world_size, group_name, backend
                )
                for w, offset in zip(self.workers, offsets, strict=True)
            ),
            return_exceptions=True,
        )
        failed = failures(self.workers, results)
        if failed:
            joined = [w for w, r in zip(self.workers, results, strict=True) if not isinstance(r, Exception)]
            await asyncio.gather(*(_forget_group(w, group_name) for w in joined))
            raise failure_kind(failed)(f"{who(failed)} could not join group {group_name!r}: {failed[0][1]}")
        self.name = group_name
        logger.info(
            "sglang workers joined weight-update group %r at ranks %s (world %d, %s, store %s:%d)",
            group_name,
            offsets,
            world_size,
            backend,
            master_address,
            master_port,
        )
        return ranks


async def _forget_group(worker: SGLangServer, group_name: str) -> None:
    try:
        await worker.destroy_weights_update_group(group_name)
    except SGLangError as exc:  # normally "does not exist"
        logger.debug("destroy_weights_update_group on %s: %s", worker.url, exc)
