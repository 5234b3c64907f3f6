"""Vote buckets for maj@k: answers the verifier calls equivalent are one vote.

The learner never decides equivalence itself: it asks the reward service (`RewardService.Score`
with the candidate as the completion, `\\boxed{candidate}`, and the bucket's representative as the
reference), so `0.5`, `\\frac12` and `1/2` fall in one bucket exactly when training would reward
them the same.

Per problem, in sample order, each answer joins the first earlier bucket whose representative it
is equivalent to, else opens a new bucket and becomes its representative (identical strings join
without asking). Buckets are numbered in order of first appearance, which is what the tie rule of
maj@k relies on (estimators.py). The same assignment is computed in rounds so that one Score call
covers every problem: round r compares each still-unassigned answer with the problem's r-th
representative. A pair whose scoring timed out counts as not equivalent. Rows of a task other than
math ("" / "math") are bucketed by exact string: their extracted answers are not math expressions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import grpc
from grpo.v1 import reward_pb2, reward_pb2_grpc
from grpo_common.channel import ChannelConfig, create_channel

from grpo_learner.eval.estimators import NO_ANSWER

MATH_TASKS = frozenset({"", "math"})
SCORE_BATCH = 512  # items per Score call (the reward service's default limit is 4096)


class BucketingError(RuntimeError):
    """The reward service could not be asked; the message names it and its gRPC status."""


@dataclass(frozen=True)
class Pair:
    candidate: str
    representative: str
    task: str


# Given pairs, says for each whether candidate is equivalent to representative.
Judge = Callable[[Sequence[Pair]], Awaitable[list[bool]]]


async def assign_buckets(
    answers: Sequence[Sequence[str | None]], tasks: Sequence[str], judge: Judge
) -> list[list[int]]:
    """For each problem, the bucket of each sample's extracted answer (NO_ANSWER when None)."""
    uniques = [list(dict.fromkeys(a for a in problem if a)) for problem in answers]
    bucket_of: list[dict[str, int]] = [{} for _ in answers]
    opened = [0] * len(answers)  # buckets opened so far, per problem
    unassigned = [list(u) for u in uniques]
    while any(unassigned):
        pairs: list[tuple[int, str, Pair]] = []
        for p, rest in enumerate(unassigned):
            if not rest:
                continue
            representative = rest[0]
            bucket_of[p][representative] = opened[p]
            opened[p] += 1
            for candidate in rest[1:]:
                if tasks[p] in MATH_TASKS:
                    pairs.append((p, candidate, Pair(candidate, representative, tasks[p])))
        verdicts = await judge([pair for _, _, pair in pairs]) if pairs else []
        joined: list[set[str]] = [set() for _ in answers]
        for (p, candidate, pair), same in zip(pairs, verdicts, strict=True):
            if same:
                bucket_of[p][candidate] = bucket_of[p][pair.representative]
                joined[p].add(candidate)
        unassigned = [[a for a in rest[1:] if a not in joined[p]] for p, rest in enumerate(unassigned)]
    return [[bucket_of[p][a] if a else NO_ANSWER for a in problem] for p, problem in enumerate(answers)]


def reward_service_judge(
    address: str, channel_config: ChannelConfig | None = None, timeout_s: float = 120.0
) -> Judge:
    """A Judge that asks the reward service at `address` (Score, in batches of SCORE_BATCH)."""

    async def judge(pairs: Sequence[Pair]) -> list[bool]:
        verdicts: list[bool] = []
        async with create_channel(address, channel_config) as channel:
            stub = reward_pb2_grpc.RewardServiceStub(channel)
            for start in range(0, len(pairs), SCORE_BATCH):
                batch = pairs[start : start + SCORE_BATCH]
                request = reward_pb2.ScoreRequest(
                    items=[
                        reward_pb2.ScoreItem(
                            id=str(i),
                            completion=f"\\boxed{{{pair.candidate}}}",
                            reference=pair.representative,
                            task=pair.task,
                        )
                        for i, pair in enumerate(batch)
                    ]
                )
                try:
                    response = await stub.Score(request, timeout=timeout_s)
                except grpc.aio.AioRpcError as exc:
                    raise BucketingError(
                        f"the reward service at {address} could not compare answers for maj@k: "
                        f"{exc.code().name}: {exc.details()}"
                    ) from None
                verdicts += [r.correct and not r.timed_out for r in response.results]
        return verdicts

    return judge
