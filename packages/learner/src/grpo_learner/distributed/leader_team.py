"""Rank 0 leads, the other learner ranks follow: the command channel between them.

Rank 0 runs the ordinary training loop (it alone talks to rollout services, logs and evaluates).
Whenever the loop needs every rank, rank 0 broadcasts a command, then does the same work itself:

    UPDATE      + the step's groups (JSON bytes)   every rank: advantages on all, train its shard
    GATHER                                          every rank: all-gather full tensors for the push
    CHECKPOINT  + the step                          every rank: DCP shards + its RNG; full weights
    DONE / ABORT  + final state / the error         the followers return / fail with rank 0's error
    KEEPALIVE                                       nothing: rank 0 is busy alone, still alive

A command is a broadcast of a [kind, length] int64 header and then `length` payload bytes as a
uint8 tensor (no pickle). Followers sit in that broadcast between commands. While rank 0 works
alone (waiting for rollouts, pushing weights, evaluating) it sends KEEPALIVE every timeout/4
seconds, so the process group's timeout can stay short: it only fires when a rank is really gone.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from grpo_learner.data.rollout_data import ScoredGroup
from grpo_learner.distributed.batch_codec import decode_update, encode_update
from grpo_learner.distributed.fsdp import FsdpParallel
from grpo_learner.distributed.full_weights import gather_full_state_dict
from grpo_learner.distributed.process_group import RankFailure, Ranks, failure_message
from grpo_learner.distributed.sharded_checkpoint import complete, save_shards
from grpo_learner.grpo.update import Trainer
from grpo_learner.training.checkpoint import TrainerState

logger = logging.getLogger(__name__)


class Command(IntEnum):
    KEEPALIVE = 0
    UPDATE = 1
    GATHER = 2
    CHECKPOINT = 3
    DONE = 4
    ABORT = 5


@dataclass
class CommandLink:
    """Broadcasts from rank 0 to all ranks; tensors live on the process group's device."""

    ranks: Ranks

    def send(self, kind: Command, payload: bytes = b"") -> None:
        header = torch.tensor([int(kind), len(payload)], dtype=torch.int64, device=self.ranks.device)
        dist.broadcast(header, src=0)
        if payload:
            data = torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(self.ranks.device)
            dist.broadcast(data, src=0)

    def receive(self) -> tuple[Command, bytes]:
        header = torch.empty(2, dtype=torch.int64, device=self.ranks.device)
        dist.broadcast(header, src=0)
        kind, length = (int(v) for v in header.tolist())
        if length == 0:
            return Command(kind), b""
        data = torch.empty(length, dtype=torch.uint8, device=self.ranks.device)
        dist.broadcast(data, src=0)
        return Command(kind), data.cpu().numpy().tobytes()


@dataclass
class RankWork:
    """The collective part of each command: identical code on rank 0 and on the followers."""

    trainer: Trainer
    parallel: FsdpParallel
    ranks: Ranks
    checkpoint_dir: Path

    def run(self, kind: Command, payload: bytes) -> Any:
        if self.ranks.device.type == "cuda":  # rank 0 runs this in a worker thread
            torch.cuda.set_device(self.ranks.device)
        if kind == Command.UPDATE:
            return self.trainer.update(*decode_update(payload))
        if kind == Command.GATHER:
            return gather_full_state_dict(self.trainer.model, self.ranks)
        if kind == Command.CHECKPOINT:
            step = json.loads(payload)["step"]
            model = self.trainer.model
            save_shards(
                self.checkpoint_dir, step, self.parallel.root(model), self.trainer.optimizer, self.ranks
            )
            return gather_full_state_dict(model, self.ranks)  # for rank 0's Hugging Face export
        raise ValueError(f"rank {self.ranks.rank}: unknown command {kind!r}")


def follow_leader(work: RankWork, link: CommandLink) -> TrainerState:
    """Followers' whole life: do what rank 0 says until DONE; returns rank 0's final state."""
    while True:
        try:
            kind, payload = link.receive()
        except Exception as exc:  # rank 0 gone: the broadcast errors out or times out
            raise RankFailure(failure_message(work.ranks, "waiting for rank 0's next command", exc)) from exc
        if kind == Command.KEEPALIVE:
            continue
        if kind == Command.DONE:
            return TrainerState(**json.loads(payload))
        if kind == Command.ABORT:
            raise RankFailure(f"rank {work.ranks.rank}: rank 0 stopped the run: {payload.decode()}")
        work.run(kind, payload)


def _collective_failure(exc: BaseException) -> bool:
    """A lost or timed-out peer (NCCL raises DistError; gloo a RuntimeError naming itself)."""
    text = str(exc).lower()
    return isinstance(exc, dist.DistError) or any(
        word in text for word in ("gloo", "nccl", "timed out", "connection")
    )


class LeaderTeam:
    """`TrainingTeam` for rank 0 of several: broadcast the command, then do the work here too."""

    def __init__(
        self,
        work: RankWork,
        link: CommandLink,
        *,
        keep_last: int,
        tokenizer: Any | None = None,
        keepalive_s: float | None = None,
    ) -> None:
        self.work = work
        self.link = link
        self.keep_last = keep_last
        self.tokenizer = tokenizer
        self.keepalive_s = keepalive_s if keepalive_s is not None else work.ranks.timeout_s / 4
        self._stop: asyncio.Event | None = None
        self._keepalive: asyncio.Task | None = None
        self._error: BaseException | None = None  # a failed keepalive: a follower is gone
        self._in_step = True  # False after a command failed midway: followers may be mid-collective

    # --- TrainingTeam ------------------------------------------------------------------------

    async def update(self, groups: Sequence[ScoredGroup], policy_version: int) -> dict[str, float]:
        return await self._command(Command.UPDATE, encode_update(groups, policy_version))

    async def full_weights(self) -> Mapping[str, torch.Tensor]:
        # by the model's own names (peft's with LoRA): the push selection folds the adapters in
        return await self._command(Command.GATHER)

    async def save_checkpoint(self, state: TrainerState) -> Path:
        full = await self._command(Command.CHECKPOINT, json.dumps({"step": state.step}).encode())
        trainer = self.work.trainer
        return await asyncio.to_thread(  # rank 0 alone; the followers are kept alive meanwhile
            complete,
            self.work.checkpoint_dir,
            state,
            trainer.model,
            full,
            trainer.scheduler,
            self.tokenizer,
            self.keep_last,
            self.work.ranks.world_size,
        )

    async def close(self, error: BaseException | None = None, state: TrainerState | None = None) -> None:
        await self._stop_keepalive()
        if not self._in_step or self._error is not None:
            return  # the group is broken; followers fail on their own (error or timeout)
        try:
            if error is None:
                payload = json.dumps(asdict(state) if state is not None else {"step": 0, "policy_version": 0})
                await asyncio.to_thread(self.link.send, Command.DONE, payload.encode())
            else:
                message = f"{type(error).__name__}: {error}"
                await asyncio.to_thread(self.link.send, Command.ABORT, message.encode())
        except Exception as exc:  # followers already gone: nothing left to tell
            logger.warning("could not tell the other ranks that the run ended: %s", exc)

    # --- internals ---------------------------------------------------------------------------

    def start(self) -> None:
        """Begin keeping the followers alive (call inside the running event loop)."""
        self._stop = asyncio.Event()
        self._keepalive = asyncio.create_task(self._keep_alive(self._stop), name="rank0-keepalive")

    async def _command(self, kind: Command, payload: bytes = b"") -> Any:
        await self._stop_keepalive()
        if self._error is not None:
            raise RankFailure(failure_message(self.work.ranks, "keeping the other ranks alive", self._error))
        try:
            return await asyncio.to_thread(self._send_and_run, kind, payload)
        except Exception as exc:
            self._in_step = False
            if _collective_failure(exc):
                raise RankFailure(failure_message(self.work.ranks, kind.name, exc)) from exc
            raise
        finally:
            if self._in_step:
                self.start()

    def _send_and_run(self, kind: Command, payload: bytes) -> Any:
        self.link.send(kind, payload)
        return self.work.run(kind, payload)

    async def _keep_alive(self, stop: asyncio.Event) -> None:
        while True:
            try:
                await asyncio.wait_for(stop.wait(), self.keepalive_s)
                return
            except TimeoutError:
                pass
            try:
                await asyncio.to_thread(self.link.send, Command.KEEPALIVE)
            except Exception as exc:
                self._error = exc
                logger.error("%s", failure_message(self.work.ranks, "keepalive to the other ranks", exc))
                return

    async def _stop_keepalive(self) -> None:
        if self._keepalive is not None and self._stop is not None:
            self._stop.set()
            await self._keepalive  # never cancelled mid-broadcast: two collectives must not overlap
            self._keepalive = None
