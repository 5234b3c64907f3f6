"""Process-group setup for the learner on several processes, and the facts every rank needs.

`torchrun --nproc-per-node N -m grpo_learner train ...` (or `grpo train --nproc N`) starts N copies
of the learner with RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT in the environment.
Each joins one process group: NCCL when the learner trains on CUDA, gloo on CPU (tests, laptops).

The group gets a short timeout (`distributed.timeout_s`) on purpose: a collective that waits longer
than that means a rank died or hung, and the job should stop with a message saying so instead of
hanging forever. Rank 0 keeps idle ranks alive while it waits for rollouts (see leader_team),
so slow generation never counts against that timeout.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ranks:
    """Who this process is in the learner's process group."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    timeout_s: float

    @property
    def is_main(self) -> bool:
        """Rank 0: the only rank that talks to rollout services, logs metrics and writes shared files."""
        return self.rank == 0


class RankFailure(RuntimeError):
    """A collective with the other ranks failed: one of them died, hung or stopped the run."""


def launched_distributed(environ: dict[str, str] | None = None) -> bool:
    """True under torchrun (or any launcher that sets WORLD_SIZE > 1)."""
    environ = os.environ if environ is None else environ
    return int(environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(timeout_s: float, device: str = "auto") -> Ranks:
    """Join the process group described by the torchrun environment (idempotent).

    device "auto": CUDA (one GPU per local rank, NCCL) when available, else CPU (gloo).
    """
    rank = int(os.environ["RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        target = torch.device("cuda", local_rank)
    else:
        target = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            timeout=timedelta(seconds=timeout_s),
            device_id=target if use_cuda else None,
        )
        logger.info(
            "rank %d of %d joined the process group (%s, collective timeout %.0f s)",
            rank,
            world_size,
            dist.get_backend(),
            timeout_s,
        )
    return Ranks(rank, world_size, local_rank, target, timeout_s)


def shutdown_distributed() -> None:
    """Tear the group down together, after a clean run only.

    The barrier first: rank 0's last broadcast (DONE) can return before a follower has read it,
    and a rank that destroys its group while a peer may still have that collective in flight is a
    race at gloo's teardown. After the barrier no collective is in flight on either side.
    """
    if dist.is_initialized():
        rank = dist.get_rank()
        dist.barrier()
        dist.destroy_process_group()
        logger.info("rank %d left the process group", rank)


def failure_message(ranks: Ranks, what: str, exc: BaseException) -> str:
    return (
        f"rank {ranks.rank} of {ranks.world_size}: {what} failed: another rank died, hung for more "
        f"than distributed.timeout_s={ranks.timeout_s:g} s, or stopped the run (look for the first "
        f"rank that failed in the log). Cause: {exc}"
    )
