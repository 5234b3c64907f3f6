"""Turn a RolloutRequest into a checked plan, or say exactly which field is wrong.

Pure apart from tokenisation: no generation, no RPC. Every refusal names the field
(`prompts[3].token_ids`, `sampling.max_new_tokens`) and says what would be accepted, so a learner
author can fix the request without reading this code.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

import grpc
from grpo.v1 import reward_pb2, rollout_pb2
from grpo_common.registry import UnknownName
from grpo_common.row_fields import FieldLimits, InvalidFields, parse_fields

from grpo_rollout.backends.contract import GeneratorInfo, SamplingParams
from grpo_rollout.environments.contract import DEFAULT_MAX_TURNS, ENVIRONMENTS, SINGLE_TURN, Environment
from grpo_rollout.environments.settings import EpisodeEnvironment
from grpo_rollout.prompt_encoding import PromptEncoder
from grpo_rollout.sampling import GREEDY_TEMPERATURE_BELOW, is_greedy


class RequestError(Exception):
    """A request the service refuses; `code` is the gRPC status to answer with."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


@dataclass(frozen=True)
class PreparedPrompt:
    id: str
    token_ids: list[int]
    reference: str
    task: str
    fields_json: str = ""  # the row's extra columns, passed through to ScoreItem.fields_json
    environment: EpisodeEnvironment | None = None  # None = single-turn (one generation per completion)
    chat: bool = False  # rendered with the chat template (so tool turns are rendered by it too)


@dataclass(frozen=True)
class GeneratePlan:
    prompts: list[PreparedPrompt]
    group_size: int
    sampling: SamplingParams
    reward_spec: reward_pb2.RewardSpec | None


def sampling_config(params: rollout_pb2.SamplingParams, vocab_size: int) -> SamplingParams:
    """Proto sampling params -> SamplingParams, mapping the proto's "0 means off" conventions."""
    if not math.isfinite(params.temperature) or params.temperature < 0:
        raise invalid(
            f"sampling.temperature must be a finite number >= 0 (below {GREEDY_TEMPERATURE_BELOW:g} = "
            f"greedy), got {params.temperature}"
        )
    if not math.isfinite(params.top_p) or not 0 <= params.top_p <= 1:
        raise invalid(f"sampling.top_p must be in (0, 1] (0 = off), got {params.top_p}")
    if params.top_k < -1:
        raise invalid(f"sampling.top_k must be >= 1, or 0 / -1 for off, got {params.top_k}")
    if params.max_new_tokens <= 0:
        raise invalid(f"sampling.max_new_tokens must be > 0, got {params.max_new_tokens}")
    for token in params.stop_token_ids:
        if not 0 <= token < vocab_size:
            raise invalid(f"sampling.stop_token_ids: {token} is outside the vocabulary [0, {vocab_size})")
    return SamplingParams(
        max_new_tokens=params.max_new_tokens,
        temperature=0.0 if is_greedy(params.temperature) else float(params.temperature),
        top_p=float(params.top_p) if params.top_p > 0 else 1.0,
        top_k=params.top_k if params.top_k > 0 else -1,
        stop_token_ids=tuple(params.stop_token_ids),
        seed=params.seed if params.HasField("seed") else None,
    )


def check_fields_json(field: str, fields_json: str) -> None:
    """ "" or one JSON object the reward service accepts (`grpo_common.row_fields`, its default limits:
    finite numbers, at most 32 deep, no `completion`/`reference` key, at most 1 MiB).

    Checked before generating, so a row the reward service would refuse costs no generation.
    """
    try:
        parse_fields(fields_json, FieldLimits())
    except InvalidFields as error:
        raise invalid(f"{field}.fields_json {error}") from None


MAX_CONFIG_JSON_BYTES = 64 * 1024  # EnvironmentSpec.config_json: settings, not data


def environment_config(spec: rollout_pb2.EnvironmentSpec) -> dict[str, Any]:
    """EnvironmentSpec.config_json -> the dict the factory gets ("" = {})."""
    if len(spec.config_json.encode()) > MAX_CONFIG_JSON_BYTES:
        raise invalid(
            f"environment.config_json is {len(spec.config_json.encode())} bytes; the limit is "
            f"{MAX_CONFIG_JSON_BYTES} (it holds settings; put data in the rows)"
        )
    if not spec.config_json:
        return {}
    try:
        config = json.loads(spec.config_json)
    except ValueError as exc:
        raise invalid(f"environment.config_json is not valid JSON ({str(exc)[:120]})") from None
    except RecursionError:
        raise invalid("environment.config_json is nested too deeply to decode") from None
    if not isinstance(config, dict):
        raise invalid(f"environment.config_json must be a JSON object, got {type(config).__name__}")
    return config


@dataclass(frozen=True)
class ContextBudget:
    """What of the model's context a prompt may take: all of it but the tokens to generate."""

    max_context: int
    max_new_tokens: int

    @property
    def prompt_tokens(self) -> int:
        return self.max_context - self.max_new_tokens

    def exceeded(self, prompt_id: str, size: str) -> RequestError:
        return invalid(
            f"sampling.max_new_tokens {self.max_new_tokens} + prompt {prompt_id!r} of {size} exceeds the "
            f"model's context of {self.max_context}; lower max_new_tokens or shorten the prompt"
        )


class RequestEnvironments:
    """The environments one request uses, built on first use: one instance per name per request.

    The request's EnvironmentSpec (limits, config) applies to every environment it names, the
    request's own and the rows' (`Prompt.environment`). Names are looked up with
    `import_references=False`: a caller never makes the service import a module.
    """

    def __init__(self, spec: rollout_pb2.EnvironmentSpec, encoder: PromptEncoder) -> None:
        if spec.max_turns < 0:
            raise invalid(
                f"environment.max_turns must be >= 1 (0 = {DEFAULT_MAX_TURNS}), got {spec.max_turns}"
            )
        if spec.max_turn_tokens < 0:
            raise invalid(
                "environment.max_turn_tokens must be > 0 (0 = the remaining budget), "
                f"got {spec.max_turn_tokens}"
            )
        self._spec = spec
        self._encoder = encoder
        self._config: dict[str, Any] | None = None
        self._built: dict[str, EpisodeEnvironment] = {}
        if spec.name not in SINGLE_TURN:
            self.get("environment.name", spec.name)

    def for_prompt(self, field: str, name: str) -> EpisodeEnvironment | None:
        if not name:
            return (
                self.get("environment.name", self._spec.name) if self._spec.name not in SINGLE_TURN else None
            )
        return None if name in SINGLE_TURN else self.get(f"{field}.environment", name)

    def get(self, field: str, name: str) -> EpisodeEnvironment:
        if name not in self._built:
            self._built[name] = self._build(field, name)
        return self._built[name]

    def _build(self, field: str, name: str) -> EpisodeEnvironment:
        try:
            factory = ENVIRONMENTS.get_item(name, import_references=False)
        except UnknownName as exc:
            raise invalid(f"{field}: {exc}") from None
        if self._config is None:
            self._config = environment_config(self._spec)
        try:
            environment = factory(self._config)
        except Exception as exc:  # the factory's refusal of its settings, in its words
            raise invalid(f"environment {name!r} refused environment.config_json: {exc}") from None
        if not isinstance(environment, Environment):
            raise RequestError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"environment {name!r}: its factory returned {type(environment).__name__}, which lacks "
                "stop_strings / tools / reset / step (the Environment protocol); fix the plugin",
            )
        stops: dict[int, str] = {}
        for stop in environment.stop_strings:
            ids = self._encoder.encode_markup(stop)
            if len(ids) != 1:
                raise invalid(
                    f"environment {name!r}: stop string {stop!r} is {len(ids)} tokens of this model's "
                    "tokenizer, not exactly one; a turn must end on a token boundary (add it as a token)"
                )
            stops[ids[0]] = stop
        return EpisodeEnvironment(
            name, environment, stops, self._spec.max_turns or DEFAULT_MAX_TURNS, self._spec.max_turn_tokens
        )


def prepare_prompt(
    index: int,
    prompt: rollout_pb2.Prompt,
    encoder: PromptEncoder,
    chat: bool,
    vocab_size: int,
    environments: RequestEnvironments | None = None,
    budget: ContextBudget | None = None,
) -> PreparedPrompt:
    field = f"prompts[{index}]"
    if not prompt.id:
        raise invalid(f"{field}.id is empty; every prompt needs a unique id (its idempotency key)")
    if bool(prompt.text) == bool(prompt.token_ids):
        raise invalid(f"{field} (id {prompt.id!r}): set exactly one of text / token_ids")
    if not prompt.reference:
        raise invalid(f"{field}.reference is empty; the reward service needs the ground-truth answer")
    check_fields_json(field, prompt.fields_json)  # before any encoding: a bad row costs no work
    if prompt.token_ids:
        token_ids = list(prompt.token_ids)
        bad = next((t for t in token_ids if not 0 <= t < vocab_size), None)
        if bad is not None:
            raise invalid(f"{field}.token_ids: {bad} is outside the vocabulary [0, {vocab_size})")
    environment = environments.for_prompt(field, prompt.environment) if environments else None
    if not prompt.token_ids:
        fewest = encoder.fewest_tokens(prompt.text)
        if budget is not None and fewest > max(budget.prompt_tokens, 0):
            raise budget.exceeded(prompt.id, f"{len(prompt.text)} characters (at least {fewest} tokens)")
        tools = environment.environment.tools if environment is not None else None
        token_ids = encoder.encode(prompt.text, chat, tools)
        if not token_ids:
            raise invalid(f"{field}.text tokenises to nothing")
    if budget is not None and len(token_ids) > budget.prompt_tokens:
        raise budget.exceeded(prompt.id, f"{len(token_ids)} tokens")
    rendered_as_chat = chat and encoder.has_chat_template and not prompt.token_ids
    return PreparedPrompt(
        prompt.id, token_ids, prompt.reference, prompt.task, prompt.fields_json, environment, rendered_as_chat
    )


def validate_request(
    request: rollout_pb2.RolloutRequest,
    encoder: PromptEncoder,
    info: GeneratorInfo,
    max_group_size: int,
    max_prompts: int,
) -> GeneratePlan:
    """Check everything that can be checked before generating; raise RequestError otherwise."""
    if not request.prompts:
        raise invalid("prompts is empty; send at least one prompt")
    if len(request.prompts) > max_prompts:
        raise invalid(
            f"prompts has {len(request.prompts)} entries; this service accepts at most {max_prompts}"
        )
    if request.group_size < 2:
        raise invalid(f"group_size must be >= 2 (a group of one has no advantage), got {request.group_size}")
    if request.group_size > max_group_size:
        raise invalid(f"group_size {request.group_size} exceeds this service's limit of {max_group_size}")
    sampling = sampling_config(request.sampling, info.vocab_size)
    budget = ContextBudget(info.max_context_length, sampling.max_new_tokens)
    environments = RequestEnvironments(request.environment, encoder)
    seen: set[str] = set()
    prompts = []
    for index, prompt in enumerate(request.prompts):
        if prompt.id in seen:
            raise invalid(
                f"prompts[{index}].id {prompt.id!r} is a duplicate; ids must be unique in a request"
            )
        seen.add(prompt.id)
        prompts.append(
            prepare_prompt(
                index, prompt, encoder, request.apply_chat_template, info.vocab_size, environments, budget
            )
        )
    if request.min_policy_version > info.weight_version:
        raise RequestError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"min_policy_version {request.min_policy_version} is above this service's policy version "
            f"{info.weight_version}; push the newer weights (UpdateWeights) first",
        )
    if request.partial:  # v1.4: an update pauses this request's calls instead of waiting for them
        sampling = dataclasses.replace(sampling, partial=True)
    spec = request.reward_spec if request.HasField("reward_spec") else None
    return GeneratePlan(prompts, request.group_size, sampling, spec)
