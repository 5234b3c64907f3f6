"""The environment contract: what a multi-turn episode asks of an environment, and what it gets back.

An episode alternates model turns and environment turns (see `EnvironmentSpec` in rollout.proto):

    context = prompt tokens
    repeat up to max_turns:
        turn = the model's tokens, sampled until EOS, a stop token, one of `stop_strings` or the budget
        context += turn                                          (loss_mask 1, sampler logprobs)
        if the turn ended on EOS / a request stop token, or the budget is spent: the episode ends
        result = environment.step(state, turn)
        context += tokens of result.observation                  (loss_mask 0, logprob 0)
        if result.done: the episode ends

The service never decodes and re-encodes the model's tokens: the learner trains on exactly the ids the
generator sampled plus the ids of the observations, in order. `ModelTurn.text` is a decoding handed to
the environment for its convenience only.

An environment is registered in `ENVIRONMENTS` under a name, as a factory (usually the class itself)
called once per request with the `EnvironmentSpec.config_json` object: `factory(config) -> Environment`.
One instance then serves every episode of that request, possibly from several threads at once, so the
per-episode data lives in the `state` that `reset` returns, never on the instance. `reset` and `step`
are plain functions: the service runs them in worker threads, so a slow tool never blocks the other
episodes' generation. Plugins are entry points in group `grpo.environments` or a `module:attr` the
operator loads with `grpo-rollout serve --plugin`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from grpo_common.registry import Registry


@dataclass(frozen=True)
class EpisodeStart:
    """What an environment knows when an episode begins."""

    prompt_id: str
    prompt_text: str  # the prompt as the model saw it, decoded (chat template applied)
    prompt_token_ids: tuple[int, ...]
    reference: str  # the row's ground truth (also what the reward service gets)
    fields: Mapping[str, Any]  # the row's extra columns (Prompt.fields_json)
    episode_index: int  # which of the group's G episodes (0 .. G-1)
    # The text the model's chat template puts after the model's turn for a tool message with this content
    # (PromptEncoder.render_tool_turn), given when the request applies the chat template; None otherwise.
    render_tool_message: Callable[[str], str] | None = None
    # Its token ids, the content encoded as plain text (PromptEncoder.encode_tool_turn): what a chat
    # environment returns as `observation_token_ids`, since observation text never reads special tokens.
    encode_tool_message: Callable[[str], list[int]] | None = None


@dataclass(frozen=True)
class ModelTurn:
    """One model turn: the tokens it sampled and their decoding."""

    token_ids: tuple[int, ...]
    text: str  # decoded with special tokens kept, so tool markup is visible
    index: int  # 0 for the first turn
    stop_string: str | None  # which of `stop_strings` ended the turn, None if none did


@dataclass(frozen=True)
class StepResult:
    """The environment's answer to one model turn.

    The observation is `observation_token_ids` when given (used as they are), else `observation` text,
    encoded alone with the model's tokenizer as plain text: no special tokens added and none read (a
    tool printing `</s>` gives the characters, never EOS), and cut before encoding to what the episode's
    budget can take. An environment that needs special tokens (a chat template's markup) gives ids.
    An empty observation adds no tokens.
    """

    observation: str = ""
    observation_token_ids: Sequence[int] | None = None
    done: bool = False
    reward: float = 0.0  # per-turn reward, summed into EpisodeStats.environment_reward
    tool_calls: int = 0  # tool calls this step ran
    tool_errors: int = 0  # ... of which failed (bad syntax, error, time limit)
    info: Mapping[str, Any] = field(default_factory=dict)  # free-form, logged at debug level


@runtime_checkable
class Environment(Protocol):
    # A model turn ends when its text ends with one of these (e.g. "</tool_call>"); each must be
    # exactly one token of the model's tokenizer (the service checks at the start of a request), so a
    # turn ends on a token boundary and its ids are never re-encoded.
    stop_strings: Sequence[str]
    # Tool schemas (JSON-schema dicts) for the chat template's `tools=` argument; empty = none.
    tools: Sequence[Mapping[str, Any]]

    def reset(self, start: EpisodeStart) -> Any:
        """The episode's initial state (anything; handed back to `step`)."""
        ...

    def step(self, state: Any, turn: ModelTurn) -> StepResult:
        """Answer one model turn. Exceptions end the episode and count as a tool error."""
        ...


EnvironmentFactory = Callable[[Mapping[str, Any]], Environment]

ENVIRONMENTS: Registry[EnvironmentFactory] = Registry("environment", entry_point_group="grpo.environments")

SINGLE_TURN = ("", "none")  # environment names that mean: no environment, one generation
DEFAULT_MAX_TURNS = 8  # EnvironmentSpec.max_turns = 0
