"""Completions for evaluation, from the same rollout services (and verifier) as training.

Every problem is one prompt of a `Generate` call made through the learner's `RolloutClient`
(spread over any number of services, re-sent on failure). Greedy decoding is temperature 0; a
group needs at least 2 completions, so a greedy problem asks for 2 identical ones and keeps the
first, and N sampled completions ask for max(N, 2) and keep the first N. Sampling is seeded (the
client derives each request's seed from the run seed and the prompt ids), so an evaluation
repeats exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from grpo.v1 import reward_pb2, rollout_pb2

from grpo_learner.config import RolloutConfig, SamplingConfig
from grpo_learner.data.episodes import EpisodeStats
from grpo_learner.data.prompts import PromptItem
from grpo_learner.rollouts.client import RolloutClient, environment_to_proto

PROMPTS_PER_CALL = 1024  # well under a rollout service's default limit of 4096 prompts in flight
ID_PREFIX = "eval:"


@dataclass(frozen=True)
class Sample:
    """One evaluated completion, as it goes to samples.jsonl."""

    problem_id: str
    kind: str  # "greedy" or "sampled"
    sample_index: int
    text: str
    extracted: str | None
    correct: bool
    reward: float
    timed_out: bool = False
    bucket: int | None = None  # sampled: its maj@k vote bucket (-1: no answer extracted)
    episode: EpisodeStats | None = None  # a multi-turn episode's turns, tool calls, ... (v1.2)


@dataclass(frozen=True)
class Request:
    """What to ask of the rollout services for one pass over the problems."""

    kind: str  # "greedy" or "sampled"
    completions: int  # kept per problem
    sampling: SamplingConfig
    apply_chat_template: bool
    seed: int
    min_policy_version: int = 0
    reward_spec: reward_pb2.RewardSpec | None = None  # None: the reward service's defaults


def greedy_sampling(sampling: SamplingConfig) -> SamplingConfig:
    """`sampling` at temperature 0 (greedy), which the proto allows and training's validation does not:
    model_copy does not re-validate, on purpose."""
    return sampling.model_copy(update={"temperature": 0.0})


def _sample(problem_id: str, kind: str, index: int, completion: rollout_pb2.Completion) -> Sample:
    return Sample(
        problem_id=problem_id,
        kind=kind,
        sample_index=index,
        text=completion.text,
        extracted=completion.extracted_answer if completion.HasField("extracted_answer") else None,
        correct=completion.correct,
        reward=completion.reward,
        timed_out=completion.reward_timed_out,
        episode=EpisodeStats.from_proto(completion.episode) if completion.HasField("episode") else None,
    )


async def generate(
    prompts: Sequence[PromptItem],
    request: Request,
    addresses: Sequence[str],
    rollout: RolloutConfig,
    on_problem: Callable[[], None] | None = None,
) -> dict[str, list[Sample]]:
    """problem id -> its `request.completions` samples in sample_index order."""
    client = RolloutClient(
        list(addresses),
        rollout.model_copy(update={"partial": False}),  # a held-out sample comes from one version
        group_size=max(2, request.completions),
        sampling=request.sampling,
        apply_chat_template=request.apply_chat_template,
        seed=request.seed,
        reward_spec=request.reward_spec,
        environment=environment_to_proto(rollout.environment),  # held-out problems get the same tools
    )
    out: dict[str, list[Sample]] = {}
    try:
        for start in range(0, len(prompts), PROMPTS_PER_CALL):
            chunk = [replace(p, id=ID_PREFIX + p.id) for p in prompts[start : start + PROMPTS_PER_CALL]]
            async for group in client.generate(chunk, request.min_policy_version):
                problem_id = group.prompt_id.removeprefix(ID_PREFIX)
                kept = group.completions[: request.completions]
                out[problem_id] = [_sample(problem_id, request.kind, i, c) for i, c in enumerate(kept)]
                if on_problem is not None:
                    on_problem()
    finally:
        await client.close()
    return out
