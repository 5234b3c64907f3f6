"""One evaluation: generate (greedy and/or N samples), bucket the answers, compute the metrics.

Used three ways: `grpo eval` (eval/command.py), the `[eval]` hook during `grpo train`
(`training_evaluator`, called by the loop with the policy version the services serve), and the
embedded default's before/after. The verifier's verdicts come with the completions (the rollout
service scores them); the vote buckets come from the reward service (buckets.py). With
[rollout.environment] the problems run as episodes in it, as in training, and the metrics add the
episodes' `episode/*` means (grpo_learner.data.episodes) over the greedy completions (else the sampled).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from grpo_learner.config import LearnerConfig, SamplingConfig
from grpo_learner.data.episodes import episode_metrics
from grpo_learner.data.prompts import PromptItem
from grpo_learner.eval.buckets import assign_buckets, reward_service_judge
from grpo_learner.eval.estimators import ProblemResult, mean_metrics
from grpo_learner.eval.sampling import Request, Sample, generate, greedy_sampling
from grpo_learner.rollouts.client import reward_spec_to_proto

if TYPE_CHECKING:  # the loop imports torch; `grpo eval` does not need it
    from grpo_learner.training.loop import Evaluator


GREEDY_REWARD = "greedy_reward"
GREEDY_CHARS = "greedy_completion_chars"


def eval_sampling(config: LearnerConfig, model: str | None = None) -> SamplingConfig:
    """How the sampled completions are drawn (greedy ones use it at temperature 0): `[rollout.sampling]`
    with `[eval]`'s temperature and max_new_tokens where set; max_new_tokens unset there falls back to
    the model's own generation_config.json (`model`, default: `model.name_or_path`), then to training's."""
    e, base = config.eval, config.rollout.sampling
    max_new_tokens = e.max_new_tokens or model_max_new_tokens(model or config.model.name_or_path)
    return base.model_copy(
        update={
            "temperature": e.temperature or base.temperature,
            "max_new_tokens": max_new_tokens or base.max_new_tokens,
        }
    )


def model_max_new_tokens(model: str) -> int | None:
    """max_new_tokens of a local model directory's generation_config.json (the model's own default)."""
    path = Path(model) / "generation_config.json"
    if not path.is_file():
        return None
    value = json.loads(path.read_text()).get("max_new_tokens")
    return int(value) if isinstance(value, int) and value > 0 else None


@dataclass(frozen=True)
class EvalResult:
    problems: list[ProblemResult]  # in the order of the prompts
    samples: list[Sample]  # greedy first, then sampled; by problem, then sample_index
    metrics: dict[str, float]  # each metric's mean over problems


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str, int], Callable[[], None] | None]]:
    """Yields `track(label, total)` -> a callback that advances a bar by one problem (or None)."""
    if not enabled:
        yield lambda label, total: None
        return
    columns = (TextColumn("[bold]eval {task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeRemainingColumn()) as bar:

        def track(label: str, total: int) -> Callable[[], None]:
            task = bar.add_task(label, total=total)
            return lambda: bar.advance(task)

        yield track


async def run_evaluation(
    prompts: Sequence[PromptItem],
    config: LearnerConfig,
    addresses: Sequence[str],
    reward_address: str | None,
    *,
    model: str | None = None,
    sampled: bool = True,
    min_policy_version: int = 0,
    progress: bool = False,
) -> EvalResult:
    """Evaluate `prompts` on the rollout services at `addresses` as the run's validated `config` says
    (`[eval]`, `[rollout]`, `[reward]`, the chat template and seed); `sampled=False` skips the N
    samples; `model` (default `model.name_or_path`) is the model the services serve.

    `min_policy_version`: the services must serve at least these weights (training passes the
    version it pushed last)."""
    if not prompts:
        raise ValueError("no problems to evaluate")
    e, rollout = config.eval, config.rollout
    n = e.samples if sampled else 0
    if not e.greedy and not n:
        raise ValueError("nothing to evaluate: ask for greedy (--greedy) and/or samples (--samples N)")
    if n and reward_address is None:
        raise ValueError("maj@k needs a reward service to bucket answers: set eval.reward_address")

    sampling = eval_sampling(config, model)
    reward_spec = reward_spec_to_proto(config.reward)  # tasks, time limit, components as in training

    def request(kind: str, completions: int, sampling: SamplingConfig) -> Request:
        chat, seed = config.data.apply_chat_template, config.train.seed
        return Request(kind, completions, sampling, chat, seed, min_policy_version, reward_spec)

    requests = [request("greedy", 1, greedy_sampling(sampling))] if e.greedy else []
    if n:
        requests.append(request("sampled", n, sampling))
    generated: dict[str, dict[str, list[Sample]]] = {}
    with _progress(progress) as track:
        for request in requests:
            tick = track(request.kind, len(prompts))
            generated[request.kind] = await generate(prompts, request, addresses, rollout, tick)

    ids = [p.id for p in prompts]
    greedy = [generated["greedy"][i][0] for i in ids] if e.greedy else []
    sampled_rows = [generated["sampled"][i] for i in ids] if n else [[] for _ in ids]
    buckets = [[] for _ in ids]
    if n:
        assert reward_address is not None
        buckets = await assign_buckets(
            [[s.extracted for s in rows] for rows in sampled_rows],
            [p.task for p in prompts],
            reward_service_judge(reward_address, rollout.channel),
        )
    problems = [
        ProblemResult(
            problem_id=pid,
            greedy_correct=greedy[i].correct if greedy else None,
            correct=tuple(s.correct for s in sampled_rows[i]),
            buckets=tuple(buckets[i]),
        )
        for i, pid in enumerate(ids)
    ]
    voted = [
        replace(s, bucket=b)
        for rows, bs in zip(sampled_rows, buckets, strict=True)
        for s, b in zip(rows, bs, strict=True)
    ]
    metrics = mean_metrics(problems, e.ks if n else ())
    # multi-turn: the tool use of the greedy episodes (else of the sampled ones), as in training
    metrics |= episode_metrics(s.episode for s in (greedy or [s for row in sampled_rows for s in row]))
    metrics |= greedy_means(greedy)
    return EvalResult(problems, [*greedy, *voted], metrics)


def greedy_means(greedy: Sequence[Sample]) -> dict[str, float]:
    """The greedy completions' mean reward (the run's [reward] spec: with a reward model, its score) and
    mean length in characters, side by side: a reward that rises with the length is a warning sign."""
    if not greedy:
        return {}
    return {
        GREEDY_REWARD: sum(s.reward for s in greedy) / len(greedy),
        GREEDY_CHARS: sum(len(s.text) for s in greedy) / len(greedy),
    }


def samples_due(version: int, sample_every: int | None, last: int) -> bool:
    """Whether the evaluation of `version` includes the sampled metrics (see training_evaluator)."""
    if sample_every is None or version in (0, last):
        return True
    return sample_every > 0 and version % sample_every == 0


def training_evaluator(
    config: LearnerConfig,
    prompts: Sequence[PromptItem],
    addresses: Sequence[str],
    reward_address: str | None,
) -> Evaluator:
    """The loop's `evaluator` for [eval]: metrics `eval/<name>` for the version the services serve.

    The loop calls it at step 0, every `eval.every` steps and at the last step. Sampled metrics are
    computed at each call, or with `eval.sample_every` at step 0, every `sample_every` steps and at
    the end (0: at step 0 and the end only). The policy version equals the step (both start at 0
    and advance together), so the step is read from the version; the last version the services
    get is max_steps rounded down to a multiple of push.every.
    """
    sample_every = config.eval.sample_every
    last = config.train.max_steps - config.train.max_steps % config.push.every
    if config.eval.samples and reward_address is None:
        raise ValueError(
            "eval.samples needs a reward service for maj@k: set eval.reward_address (host:port), "
            "or let grpo train start the services"
        )

    async def evaluate(version: int) -> dict[str, float]:
        sampled = samples_due(version, sample_every, last)
        result = await run_evaluation(
            prompts, config, addresses, reward_address, sampled=sampled, min_policy_version=version
        )
        return {f"eval/{name}": value for name, value in result.metrics.items()}

    return evaluate
