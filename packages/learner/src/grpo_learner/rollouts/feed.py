"""`RolloutFeed`: the `GroupSource` backed by rollout services, with the staleness window and refills.

Window: with `max_staleness = k`, generation for steps n..n+k is in flight while step n trains.
The request for step s asks for `min_policy_version = s - k` and is sent only once weights of at
least that version have been pushed, so no group is older than the window allows (k = 0 is
strictly on-policy: step s is requested after the weights of version s are pushed).

Filling a batch: step s's groups pass the admission filter (`sources.GroupFilter`); if fewer than
`prompts_per_step` survive (bad, stale, with a reward timeout or, under dynamic sampling,
zero-variance groups), the feed asks for the shortfall again, at most `max_refill_rounds` times,
then trains on what it has. A group dropped for a reward timeout is re-sent once (its prompt is
the first of the next request: it is scored afresh); other shortfalls draw new prompts.
Surplus groups are carried to the next step (and filtered again there).

State for checkpoints: the cursor position, the draws requested but not yet trained on (after a
restart those are requested again first, so no prompt is lost or skipped) and the draws already
re-sent after a timeout (so a restart does not give them a third try).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import Any

from grpo_learner.data.prompts import PromptCursor
from grpo_learner.data.rollout_data import GroupError, ScoredGroup, group_from_proto
from grpo_learner.data.sources import GroupFilter, StepBatch
from grpo_learner.rollouts.client import RolloutClient

logger = logging.getLogger(__name__)


def draw_of(prompt_id: str) -> int:
    """The cursor draw number encoded in a prompt id ("<item id>@<draw>")."""
    return int(prompt_id.rpartition("@")[2])


class RolloutFeed:
    def __init__(
        self,
        client: RolloutClient,
        cursor: PromptCursor,
        group_filter: GroupFilter,
        *,
        prompts_per_step: int,
        max_staleness: int = 0,
        max_refill_rounds: int = 3,
    ) -> None:
        self.client = client
        self.cursor = cursor
        self.filter = group_filter
        self.prompts_per_step = prompts_per_step
        self.max_staleness = max_staleness
        self.max_refill_rounds = max_refill_rounds
        self.pushed_version = 0
        self._groups: dict[int, list[ScoredGroup]] = {}  # step -> received valid groups
        self._invalid: Counter[int] = Counter()
        self._in_flight: dict[int, list[int]] = {}  # step -> draws requested for it
        self._tasks: dict[int, list[asyncio.Task]] = {}
        self._resend: list[int] = []  # draws to request first: restored from a checkpoint, or timed out
        self._timed_out: set[int] = set()  # draws already re-sent once after a reward timeout

    # --- requests ---------------------------------------------------------------------------

    def _draws(self, count: int) -> list[int]:
        reused, self._resend = self._resend[:count], self._resend[count:]
        return reused + [draw for draw, _ in self.cursor.take(count - len(reused))]

    def _request(self, step: int, count: int, min_version: int) -> None:
        draws = self._draws(count)
        self._in_flight.setdefault(step, []).extend(draws)
        task = asyncio.create_task(self._fetch(step, draws, min_version), name=f"rollout-step-{step}")
        self._tasks.setdefault(step, []).append(task)

    async def _fetch(self, step: int, draws: list[int], min_version: int) -> None:
        prompts = [self.cursor.item_at(d) for d in draws]
        async for message in self.client.generate(prompts, min_policy_version=min_version):
            try:
                self._groups.setdefault(step, []).append(group_from_proto(message))
            except GroupError as exc:
                logger.warning("skipping a bad group: %s", exc)
                self._invalid[step] += 1

    def _resend_once(self, draw: int) -> None:
        """Queue a timed-out prompt for one more try; a second timeout drops it for good."""
        if draw not in self._timed_out:
            self._timed_out.add(draw)
            self._resend.append(draw)

    def _fill_window(self, step: int) -> None:
        """Request every step in [step, step + k] whose weights have been pushed."""
        for s in range(step, step + self.max_staleness + 1):
            min_version = max(0, s - self.max_staleness)
            if s not in self._tasks and self.pushed_version >= min_version:
                self._request(s, self.prompts_per_step, min_version)

    async def _wait(self, step: int) -> None:
        for task in self._tasks.get(step, []):
            await task  # re-raises RolloutError

    # --- the GroupSource protocol -----------------------------------------------------------

    def weights_pushed(self, version: int) -> None:
        self.pushed_version = max(self.pushed_version, version)

    async def next_batch(self, step: int, policy_version: int) -> StepBatch:
        self._fill_window(step)
        if step not in self._tasks:  # the window needs a push that has not happened (no pusher)
            self._request(
                step, self.prompts_per_step, min(self.pushed_version, max(0, step - self.max_staleness))
            )
        batch = StepBatch(groups=[])
        dropped: Counter[str] = Counter()
        seen = 0
        for round_ in range(self.max_refill_rounds + 1):
            await self._wait(step)
            received = self._groups.get(step, [])
            dropped["invalid"] += self._invalid.pop(step, 0)
            for group in received[seen:]:
                batch.timeouts += group.timeouts
                reason = self.filter.reject_reason(group, policy_version)
                if reason is None:
                    batch.groups.append(group)
                else:
                    dropped[reason] += 1
                if reason == "timeout":
                    self._resend_once(draw_of(group.prompt_id))
                if reason in (None, "zero_std"):
                    batch.considered += 1
                    batch.zero_std += not self.filter.has_signal(group)
            seen = len(received)
            shortfall = self.prompts_per_step - len(batch.groups)
            if shortfall <= 0 or round_ == self.max_refill_rounds:
                break
            batch.refill_rounds += 1
            logger.info("step %d: %d group(s) short, requesting more (round %d)", step, shortfall, round_ + 1)
            self._request(
                step, shortfall, max(0, min(self.pushed_version, policy_version - self.max_staleness))
            )
        if len(batch.groups) < self.prompts_per_step:
            logger.warning(
                "step %d: training on %d of %d groups after %d refill round(s)",
                step,
                len(batch.groups),
                self.prompts_per_step,
                batch.refill_rounds,
            )
        batch.received = seen + dropped["invalid"]
        batch.dropped = dict(dropped)
        surplus = batch.groups[self.prompts_per_step :]
        batch.groups = batch.groups[: self.prompts_per_step]
        self._finish_step(step, surplus)
        return batch

    def _finish_step(self, step: int, surplus: list[ScoredGroup]) -> None:
        self._groups.pop(step, None)
        self._tasks.pop(step, None)
        self._in_flight.pop(step, None)
        if surplus:
            self._groups.setdefault(step + 1, []).extend(surplus)
            self._in_flight.setdefault(step + 1, []).extend(draw_of(g.prompt_id) for g in surplus)

    def state_dict(self) -> dict[str, Any]:
        pending = sorted({d for draws in self._in_flight.values() for d in draws})
        return {
            "position": self.cursor.position,
            "pending": [*self._resend, *pending],
            "timed_out": sorted(self._timed_out),  # a resumed run re-sends each of these no more
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cursor.position = int(state["position"])
        self._resend = [int(d) for d in state.get("pending", [])]
        self._timed_out = {int(d) for d in state.get("timed_out", [])}  # absent in older checkpoints

    async def close(self) -> None:
        tasks = [t for ts in self._tasks.values() for t in ts]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.client.close()
