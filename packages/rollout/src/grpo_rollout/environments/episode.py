"""One multi-turn episode: model turns and environment steps, appended token by token.

The loop is the contract's (environments/contract.py): after each model turn the episode ends on EOS or
a request stop token, or when the budget (SamplingParams.max_new_tokens, model + environment tokens) is
spent; otherwise the environment steps, its observation's tokens are appended, and the episode ends when
it says done or after `max_turns` model turns. Tokens are the truth: `token_ids` is the generator's ids
and the observations' ids concatenated, nothing is ever decoded and re-encoded; `loss_mask` is True
exactly on the generator's ids, and the environment's tokens carry logprob 0.

`reset`, `step` and the encoding of the observation run in the request batch's own worker threads (one
per episode at most, never the default executor the hf backend generates in), so a slow tool or a huge
observation holds up its own episode only and the event loop (health checks) never waits for either.
Any exception `reset` or `step` raises ends the episode as a tool error; it never fails the request.

`tool_seconds` is what the tools cost: the seconds of the `step` calls that made tool calls, timed inside
the step thread around the call. The reset, a step that called nothing (the model answered) and the
hop to the step thread and back (thread start, waiting for a core, the event loop's turn) are not
counted: on a busy machine the hop dwarfs a calculator call, and counting it showed tool-seconds at a
step whose episodes made no tool call at all.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from grpo_rollout.backends.contract import FinishReason, GeneratedCompletion
from grpo_rollout.environments.contract import EpisodeStart, ModelTurn, StepResult
from grpo_rollout.environments.settings import EpisodeEnvironment
from grpo_rollout.prompt_encoding import PromptEncoder
from grpo_rollout.request_validation import PreparedPrompt

logger = logging.getLogger(__name__)

# (context token ids, max_new_tokens, stop token ids) -> one model turn
TurnSampler = Callable[[list[int], int, tuple[int, ...]], Awaitable[GeneratedCompletion]]


@dataclass
class EpisodeCounters:
    """The counters of rollout.proto's EpisodeStats, gathered while the episode runs."""

    turns: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    tool_seconds: float = 0.0
    model_tokens: int = 0
    environment_tokens: int = 0
    turn_limit_reached: bool = False
    environment_reward: float = 0.0


@dataclass
class EpisodeCompletion:
    """A finished episode; shaped like GeneratedCompletion plus the mask and the stats."""

    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    loss_mask: list[bool] = field(default_factory=list)
    finish_reason: FinishReason = FinishReason.STOP
    weight_versions: set[int] = field(default_factory=set)  # one element unless an update slipped in
    stats: EpisodeCounters = field(default_factory=EpisodeCounters)

    @property
    def weight_version(self) -> int:
        return min(self.weight_versions) if self.weight_versions else 0

    def add_model_turn(self, turn: GeneratedCompletion) -> None:
        self.token_ids += turn.token_ids
        self.logprobs += turn.logprobs
        self.loss_mask += [True] * len(turn.token_ids)
        self.weight_versions.add(turn.weight_version)
        self.stats.turns += 1
        self.stats.model_tokens += len(turn.token_ids)

    def add_observation(self, token_ids: Sequence[int]) -> None:
        self.token_ids += token_ids
        self.logprobs += [0.0] * len(token_ids)
        self.loss_mask += [False] * len(token_ids)
        self.stats.environment_tokens += len(token_ids)


@dataclass(frozen=True)
class EpisodeContext:
    """What every episode of one request shares."""

    encoder: PromptEncoder
    budget: int  # SamplingParams.max_new_tokens: model + environment tokens after the prompt
    request_stop_ids: frozenset[int]  # EOS and the request's stop_token_ids: the model is done
    vocab_size: int
    steps: Executor  # runs reset / step: a thread per episode, apart from the generator's


def episode_start(prompt: PreparedPrompt, index: int, encoder: PromptEncoder) -> EpisodeStart:
    return EpisodeStart(
        prompt_id=prompt.id,
        prompt_text=encoder.decode(prompt.token_ids, keep_special=True),
        prompt_token_ids=tuple(prompt.token_ids),
        reference=prompt.reference,
        fields=json.loads(prompt.fields_json) if prompt.fields_json else {},
        episode_index=index,
        render_tool_message=encoder.render_tool_turn if prompt.chat else None,
        encode_tool_message=encoder.encode_tool_turn if prompt.chat else None,
    )


async def run_episode(
    prompt: PreparedPrompt,
    index: int,
    first_turn: GeneratedCompletion,
    sample: TurnSampler,
    shared: EpisodeContext,
) -> EpisodeCompletion:
    """Episode `index` of `prompt`'s group, whose first model turn is already sampled."""
    env = prompt.environment
    assert env is not None, "run_episode needs a prompt with an environment"
    episode = EpisodeCompletion()
    state = await _reset(env, episode_start(prompt, index, shared.encoder), shared.steps, episode)
    turn = first_turn
    while True:
        episode.add_model_turn(turn)
        remaining = shared.budget - len(episode.token_ids)
        last = turn.token_ids[-1] if turn.token_ids else None
        if turn.finish_reason is FinishReason.ABORT:
            episode.finish_reason = FinishReason.ABORT
            return episode
        if turn.finish_reason is FinishReason.STOP and last in shared.request_stop_ids:
            return episode  # the model is done
        if remaining <= 0:
            episode.finish_reason = FinishReason.LENGTH
            return episode
        if state is _BROKEN:
            return episode  # reset failed: the model's first turn is the whole episode
        model_turn = _model_turn(turn, episode.stats.turns - 1, env, shared)
        result = await _step(env, state, model_turn, shared.steps, episode)
        if result is None:
            return episode  # step raised: a tool error ends the episode
        encode = partial(_observation_ids, result, remaining, env, shared, episode)
        observation = await asyncio.get_running_loop().run_in_executor(shared.steps, encode)
        if observation is None:
            return episode
        if len(observation) > remaining:
            episode.add_observation(observation[:remaining])
            episode.finish_reason = FinishReason.LENGTH
            return episode
        episode.add_observation(observation)
        if result.done:
            return episode
        if episode.stats.turns >= env.max_turns:
            episode.stats.turn_limit_reached = True
            return episode
        remaining -= len(observation)
        if remaining <= 0:
            episode.finish_reason = FinishReason.LENGTH
            return episode
        context = [*prompt.token_ids, *episode.token_ids]
        turn = await sample(context, env.turn_tokens(remaining), env.stop_token_ids)


_BROKEN = object()  # the state of an episode whose reset raised


async def _reset(
    env: EpisodeEnvironment, start: EpisodeStart, steps: Executor, episode: EpisodeCompletion
) -> Any:
    try:
        return await asyncio.get_running_loop().run_in_executor(steps, env.environment.reset, start)
    except Exception as exc:
        logger.warning(
            "environment %r: reset of %s#%d raised %r", env.name, start.prompt_id, start.episode_index, exc
        )
        episode.stats.tool_errors += 1
        return _BROKEN


async def _step(
    env: EpisodeEnvironment, state: Any, turn: ModelTurn, steps: Executor, episode: EpisodeCompletion
) -> StepResult | None:
    try:
        result, seconds = await asyncio.get_running_loop().run_in_executor(
            steps, _timed_step, env.environment.step, state, turn
        )
        if not isinstance(result, StepResult):
            raise TypeError(f"step returned {type(result).__name__}, not a StepResult")
    except Exception as exc:
        logger.warning("environment %r: step %d raised %r; the episode ends", env.name, turn.index, exc)
        episode.stats.tool_errors += 1
        return None
    if result.tool_calls:
        episode.stats.tool_seconds += seconds
    episode.stats.tool_calls += result.tool_calls
    episode.stats.tool_errors += result.tool_errors
    episode.stats.environment_reward += result.reward
    if result.info:
        logger.debug("environment %r step %d: %s", env.name, turn.index, dict(result.info))
    return result


def _timed_step(step: Callable[[Any, ModelTurn], Any], state: Any, turn: ModelTurn) -> tuple[Any, float]:
    """`step(state, turn)` and its seconds, timed in the step thread that runs it (see `tool_seconds`)."""
    started = time.monotonic()
    result = step(state, turn)
    return result, time.monotonic() - started


def _model_turn(
    turn: GeneratedCompletion, index: int, env: EpisodeEnvironment, shared: EpisodeContext
) -> ModelTurn:
    last = turn.token_ids[-1] if turn.token_ids else None
    stop = (
        env.stop_strings.get(last) if turn.finish_reason is FinishReason.STOP and last is not None else None
    )
    return ModelTurn(
        token_ids=tuple(turn.token_ids),
        text=shared.encoder.decode(turn.token_ids, keep_special=True),
        index=index,
        stop_string=stop,
    )


def _observation_ids(
    result: StepResult,
    remaining: int,
    env: EpisodeEnvironment,
    shared: EpisodeContext,
    episode: EpisodeCompletion,
) -> list[int] | None:
    """The observation's token ids (given, or its text encoded alone as plain text); None (a tool error)
    if unusable. Runs in the episode's step thread, never on the event loop, and reads no more than the
    budget can take: `remaining + 1` ids, or the text cut where it surely holds that many tokens, so
    the caller still sees an observation over budget as one (and ends the episode on LENGTH)."""
    if result.observation_token_ids is not None:
        ids = [int(t) for t in itertools.islice(result.observation_token_ids, remaining + 1)]
        bad = next((t for t in ids if not 0 <= t < shared.vocab_size), None)
        if bad is not None:
            logger.warning("environment %r: observation token %d is outside the vocabulary", env.name, bad)
            episode.stats.tool_errors += 1
            return None
        return ids
    text = result.observation[: shared.encoder.chars_worth_encoding(remaining)]
    return shared.encoder.encode_plain(text) if text else []
