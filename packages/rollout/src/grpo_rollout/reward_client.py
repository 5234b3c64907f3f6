"""Scoring completions through the RewardService: batched, with a deadline per attempt and retries.

Score is pure, so retrying is always safe. A reward service that stays unreachable (or too slow)
after the retries becomes RewardUnavailable; the service then sends no group at all for that batch
rather than a half-scored one. A refusal (INVALID_ARGUMENT) is not retried: the request is wrong.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import grpc
from grpo.v1 import reward_pb2, reward_pb2_grpc
from grpo_common.channel import create_channel

from grpo_rollout.config import RewardSettings

logger = logging.getLogger(__name__)

RETRYABLE = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
)


class RewardUnavailable(RuntimeError):
    """The reward service could not score the batch within the deadline and retries."""


class RewardRefused(ValueError):
    """The reward service refused the batch (INVALID_ARGUMENT): its message says which item/field."""


class RewardClient:
    """The client of the `[reward]` section (`RewardSettings`: address, deadline, retries, batch size)."""

    def __init__(self, settings: RewardSettings) -> None:
        self.address = settings.address
        self._channel = create_channel(settings.address, settings.channel)
        self._stub = reward_pb2_grpc.RewardServiceStub(self._channel)
        self._timeout = settings.timeout_s
        self._attempts = settings.attempts
        self._backoff = settings.backoff_s
        self._max_batch = settings.max_batch_items

    @classmethod
    def from_config(cls, settings: RewardSettings) -> RewardClient:
        return cls(settings)

    async def close(self) -> None:
        await self._channel.close()

    async def score(
        self, items: Sequence[reward_pb2.ScoreItem], spec: reward_pb2.RewardSpec | None
    ) -> list[reward_pb2.ScoreResult]:
        """Results in item order; split into calls of at most `max_batch_items`, all or nothing."""
        batches = [items[i : i + self._max_batch] for i in range(0, len(items), self._max_batch)]
        answers = await asyncio.gather(*(self._score_batch(batch, spec) for batch in batches))
        return [result for answer in answers for result in answer]

    async def _score_batch(
        self, items: Sequence[reward_pb2.ScoreItem], spec: reward_pb2.RewardSpec | None
    ) -> list[reward_pb2.ScoreResult]:
        request = reward_pb2.ScoreRequest(items=items, spec=spec)
        delay = self._backoff
        for attempt in range(1, self._attempts + 1):
            try:
                response = await self._stub.Score(request, timeout=self._timeout)
                break
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    raise RewardRefused(f"reward service refused the batch: {exc.details()}") from None
                if exc.code() not in RETRYABLE or attempt == self._attempts:
                    raise RewardUnavailable(
                        f"reward service at {self.address} failed after {attempt} attempt(s): "
                        f"{exc.code().name}: {exc.details()}"
                    ) from None
                logger.warning(
                    "Score attempt %d/%d failed (%s); retrying in %.1f s",
                    attempt,
                    self._attempts,
                    exc.code().name,
                    delay,
                )
                await asyncio.sleep(delay)
                delay *= 2
        ids = [item.id for item in items]
        got = [result.id for result in response.results]
        if got != ids:
            raise RewardUnavailable(
                f"reward service at {self.address} answered ids {got[:3]}... for {ids[:3]}...; "
                "results must come back in request order"
            )
        return list(response.results)
