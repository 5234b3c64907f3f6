"""Turn a RolloutRequest into a checked plan, or say exactly which field is wrong.

Pure apart from tokenisation: no generation, no RPC. Every refusal names the field
(`prompts[3].token_ids`, `sampling.max_new_tokens`) and says what would be accepted, so a learner
author can fix the request without reading this code.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import grpc
from grpo.v1 import reward_pb2, rollout_pb2

from grpo_rollout.generator import GeneratorInfo, SamplingConfig
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


@dataclass(frozen=True)
class GeneratePlan:
    prompts: list[PreparedPrompt]
    group_size: int
    sampling: SamplingConfig
    reward_spec: reward_pb2.RewardSpec | None


def sampling_config(params: rollout_pb2.SamplingParams, vocab_size: int) -> SamplingConfig:
    """Proto sampling params -> SamplingConfig, mapping the proto's "0 means off" conventions."""
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
    return SamplingConfig(
        max_new_tokens=params.max_new_tokens,
        temperature=0.0 if is_greedy(params.temperature) else float(params.temperature),
        top_p=float(params.top_p) if params.top_p > 0 else 1.0,
        top_k=params.top_k if params.top_k > 0 else -1,
        stop_token_ids=tuple(params.stop_token_ids),
        seed=params.seed if params.HasField("seed") else None,
    )


def check_fields_json(field: str, fields_json: str) -> None:
    """ "" or one JSON object (the reward task's keyword fields); its size limit is the reward server's.

    Checked before generating, so a malformed row costs no generation.
    """
    if not fields_json:
        return
    try:
        fields = json.loads(fields_json)
    except ValueError as exc:  # JSONDecodeError, or a nesting too deep to decode
        raise invalid(f"{field}.fields_json is not valid JSON ({str(exc)[:120]})") from None
    except RecursionError:
        raise invalid(f"{field}.fields_json is nested too deeply to decode") from None
    if not isinstance(fields, dict):
        raise invalid(
            f"{field}.fields_json must be a JSON object (column -> value), got {type(fields).__name__}"
        )


def prepare_prompt(
    index: int, prompt: rollout_pb2.Prompt, encoder: PromptEncoder, chat: bool, vocab_size: int
) -> PreparedPrompt:
    field = f"prompts[{index}]"
    if not prompt.id:
        raise invalid(f"{field}.id is empty; every prompt needs a unique id (its idempotency key)")
    if bool(prompt.text) == bool(prompt.token_ids):
        raise invalid(f"{field} (id {prompt.id!r}): set exactly one of text / token_ids")
    if not prompt.reference:
        raise invalid(f"{field}.reference is empty; the reward service needs the ground-truth answer")
    if prompt.token_ids:
        token_ids = list(prompt.token_ids)
        bad = next((t for t in token_ids if not 0 <= t < vocab_size), None)
        if bad is not None:
            raise invalid(f"{field}.token_ids: {bad} is outside the vocabulary [0, {vocab_size})")
    else:
        token_ids = encoder.encode(prompt.text, chat)
        if not token_ids:
            raise invalid(f"{field}.text tokenises to nothing")
    check_fields_json(field, prompt.fields_json)
    return PreparedPrompt(prompt.id, token_ids, prompt.reference, prompt.task, prompt.fields_json)


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
    seen: set[str] = set()
    prompts = []
    for index, prompt in enumerate(request.prompts):
        if prompt.id in seen:
            raise invalid(
                f"prompts[{index}].id {prompt.id!r} is a duplicate; ids must be unique in a request"
            )
        seen.add(prompt.id)
        prompts.append(prepare_prompt(index, prompt, encoder, request.apply_chat_template, info.vocab_size))
    longest = max(prompts, key=lambda p: len(p.token_ids))
    if len(longest.token_ids) + sampling.max_new_tokens > info.max_context_length:
        raise invalid(
            f"sampling.max_new_tokens {sampling.max_new_tokens} + prompt {longest.id!r} of "
            f"{len(longest.token_ids)} tokens exceeds the model's context of {info.max_context_length}; "
            "lower max_new_tokens or shorten the prompt"
        )
    if request.min_policy_version > info.weight_version:
        raise RequestError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"min_policy_version {request.min_policy_version} is above this service's policy version "
            f"{info.weight_version}; push the newer weights (UpdateWeights) first",
        )
    spec = request.reward_spec if request.HasField("reward_spec") else None
    return GeneratePlan(prompts, request.group_size, sampling, spec)
