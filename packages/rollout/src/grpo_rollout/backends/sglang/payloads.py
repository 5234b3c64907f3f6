"""Translation between the Generator dataclasses and SGLang's /generate JSON, in both directions.

Pure functions, so the exact payloads are tested without a server:
- request: `input_ids`, per-sequence `sampling_params` (SGLang keys: `max_new_tokens`, `temperature`,
  `top_p`, `top_k` with -1 = off, `stop_token_ids`, `sampling_seed` — there is no `seed` key),
  `return_logprob: true`, `logprob_start_len: -1` (output tokens only);
- response: `output_ids`, `meta_info.output_token_logprobs` as `[logprob, token_id, text]`,
  `meta_info.finish_reason.type` in stop/length/abort, `meta_info.weight_version` (a string).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from grpo_common.token_versions import (
    TokenVersionsError,
    VersionRuns,
    check_runs,
    encode_runs,
    expand_runs,
    oldest,
)

from grpo_rollout.backends.contract import FinishReason, GeneratedCompletion, SamplingParams

SEED_MODULUS = 2**63  # SGLang stores sampling_seed as a signed 64-bit integer


class SGLangProtocolError(ValueError):
    """A /generate answer that does not have the shape SGLang documents."""


def sequence_seed(seed: int, prompt_index: int, n: int, sample_index: int) -> int:
    """A distinct, reproducible seed per sequence: the n samples of one prompt must not be copies."""
    return (seed + prompt_index * n + sample_index) % SEED_MODULUS


def sampling_params(sampling: SamplingParams, seed: int | None) -> dict[str, Any]:
    params: dict[str, Any] = {
        "max_new_tokens": sampling.max_new_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
    }
    if sampling.stop_token_ids:
        params["stop_token_ids"] = list(sampling.stop_token_ids)
    if seed is not None:
        params["sampling_seed"] = seed
    return params


def group_request(
    prompt_token_ids: Sequence[int], prompt_index: int, n: int, sampling: SamplingParams
) -> dict[str, Any]:
    """One /generate request carrying the n sequences of one prompt as a batch."""
    seeds = [
        None if sampling.seed is None else sequence_seed(sampling.seed, prompt_index, n, j) for j in range(n)
    ]
    return {
        "input_ids": [list(prompt_token_ids) for _ in range(n)],
        "sampling_params": [sampling_params(sampling, seed) for seed in seeds],
        "return_logprob": True,
        "logprob_start_len": -1,
    }


def parse_weight_version(value: object) -> int:
    """SGLang versions are strings; ours are integers. A server started without one says "default" = 0."""
    if value is None or value == "default":
        return 0
    try:
        return int(str(value))
    except ValueError:
        raise SGLangProtocolError(
            f"weight_version {value!r} is not an integer; start SGLang with --weight-version 0 "
            "and update weights only through grpo-rollout"
        ) from None


_FINISH = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH, "abort": FinishReason.ABORT}


def parse_output(output: dict[str, Any]) -> GeneratedCompletion:
    """One sequence of a /generate answer -> GeneratedCompletion; raise on anything inconsistent."""
    try:
        token_ids = [int(t) for t in output["output_ids"]]
        meta = output["meta_info"]
        entries = meta["output_token_logprobs"]
        finish = meta["finish_reason"]
    except (KeyError, TypeError) as exc:
        raise SGLangProtocolError(
            f"SGLang output lacks {exc}; was return_logprob set? got keys {sorted(output)}"
        ) from None
    if not isinstance(finish, dict) or finish.get("type") not in _FINISH:
        raise SGLangProtocolError(f"unknown finish_reason {finish!r}; expected type stop, length or abort")
    if len(entries) != len(token_ids):
        raise SGLangProtocolError(
            f"{len(entries)} output_token_logprobs for {len(token_ids)} output_ids; they must pair up"
        )
    logprobs: list[float] = []
    for position, (entry, token) in enumerate(zip(entries, token_ids, strict=True)):
        logprob, entry_token = float(entry[0]), int(entry[1])
        if entry_token != token:
            raise SGLangProtocolError(
                f"output_token_logprobs[{position}] is for token {entry_token}, output_ids has {token}"
            )
        if math.isnan(logprob) or logprob > 0:
            raise SGLangProtocolError(f"output_token_logprobs[{position}] = {logprob} is not a logprob")
        logprobs.append(logprob)
    runs = parse_weight_version_spans(meta.get("weight_versions"), len(token_ids))
    return GeneratedCompletion(
        token_ids=token_ids,
        logprobs=logprobs,
        finish_reason=_FINISH[finish["type"]],
        weight_version=oldest(runs) if runs else parse_weight_version(meta.get("weight_version")),
        version_runs=runs,
    )


def parse_weight_version_spans(spans: object, token_count: int) -> VersionRuns:
    """SGLang's per-token versions (`meta_info.weight_versions`, 0.5.23: [{"version", "start", "end"}]
    over the output tokens, one span per update the request lived through; `weight_version` is then
    the newest) -> our runs; () when the server sends none (an older SGLang: one version per sample)."""
    if spans is None:
        return ()
    try:
        versions = [
            (parse_weight_version(span["version"]), int(span["start"]), int(span["end"])) for span in spans
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise SGLangProtocolError(f"meta_info.weight_versions {spans!r} is malformed: {exc}") from None
    runs = []
    expected_start = 0
    for version, start, end in versions:
        if start != expected_start or end < start:
            raise SGLangProtocolError(
                f"meta_info.weight_versions {spans!r} do not cover the output tokens in order"
            )
        if end > start:
            runs.append((version, end - start))
        expected_start = end
    try:
        check_runs(tuple(runs), token_count)
    except TokenVersionsError as exc:
        raise SGLangProtocolError(f"meta_info.weight_versions: {exc}") from None
    return encode_runs(expand_runs(tuple(runs)))
