"""The operator's model-based reward terms: `--reward-model NAME=PATH_OR_HUB_ID`, `--judge NAME=URL`, or
the `reward_models` / `judges` tables of the service's config file (for the settings beyond the two
names). Only these names exist for requests; a request names one and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from grpo_common.model_reference import check_model_reference
from pydantic import BaseModel, ConfigDict, Field, field_validator

TERM_NAME = re.compile(r"^[A-Za-z][\w.-]{0,63}$")
DEFAULT_RUBRIC = (
    "You are grading an answer.\n\nQuestion:\n{prompt}\n\nAnswer:\n{completion}\n\n"
    "Reference answer (may be empty):\n{reference}\n\n"
    "Rate how good the answer is from {min_score} to {max_score}. Explain briefly, then end with a line "
    "of the form `SCORE: <number>`."
)


def _term_name(name: str) -> str:
    if not TERM_NAME.match(name):
        raise ValueError(
            f"term name {name[:80]!r} must start with a letter and hold only letters, digits, '_', '.', '-' "
            "(at most 64 characters)"
        )
    return name


class RewardModelConfig(BaseModel):
    """A sequence classifier (num_labels = 1) whose logit is the reward of (prompt, completion)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(..., description="what requests call it (a task or component name)")
    path: str = Field(..., description="checkpoint directory or hub id (AutoModelForSequenceClassification)")
    max_length: int = Field(512, ge=8, description="tokens per item; longer inputs are cut from the left")
    batch_size: int = Field(32, ge=1, description="items per forward pass")
    batch_timeout_s: float = Field(60.0, gt=0, description="wall-clock limit of one batch before a restart")
    start_timeout_s: float = Field(300.0, gt=0, description="how long loading the model may take")
    device: str = Field("cpu", description="torch device of the model process")
    torch_threads: int | None = Field(None, ge=1, description="CPU threads of the model process")

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        return _term_name(name)

    @field_validator("path")
    @classmethod
    def _model(cls, path: str) -> str:
        return check_model_reference(path, "reward model path")


class JudgeConfig(BaseModel):
    """An LLM judge: the rubric filled with the item, sent to `url` (OpenAI chat/completions), its score
    read strictly from the reply and mapped to [0, 1]: reward = (score - min_score) / (max - min)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(..., description="what requests call it (a task or component name)")
    url: str = Field(..., description="base URL (…/v1) or the full …/chat/completions URL")
    model: str = Field("default", description="the `model` field of each request")
    rubric: str = Field(DEFAULT_RUBRIC, description="user message; {prompt} {completion} {reference} ...")
    system: str = Field("", description="system message, if any")
    score_pattern: str = Field(
        r"SCORE:\s*([-+]?\d+(?:\.\d+)?)\s*$", description="regex whose group 1 is the score (last match)"
    )
    min_score: float = 0.0
    max_score: float = 10.0
    max_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0)
    concurrency: int = Field(8, ge=1, description="requests in flight to the endpoint at once")
    timeout_s: float = Field(30.0, gt=0, description="limit of one HTTP request")
    deadline_s: float = Field(120.0, gt=0, description="limit of one item, all attempts together")
    retries: int = Field(2, ge=0, description="extra attempts after a timeout, a 429 or a 5xx")
    backoff_s: float = Field(0.5, ge=0, description="first wait between attempts; doubles each time")
    api_key_env: str = Field("", description="environment variable holding the bearer key ('' = none)")

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        return _term_name(name)

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        if not re.match(r"^https?://[^\s/]+", url):
            raise ValueError(f"judge url {url[:120]!r} must be http(s)://host[:port][/path]")
        return url

    @field_validator("rubric", "system")
    @classmethod
    def _fills(cls, template: str) -> str:
        keys = ("prompt", "completion", "reference", "min_score", "max_score")
        try:
            template.format_map(dict.fromkeys(keys, ""))
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(f"the template names {error} but only fills {{{'}, {'.join(keys)}}}") from None
        return template

    @field_validator("score_pattern")
    @classmethod
    def _one_group(cls, pattern: str) -> str:
        if re.compile(pattern, re.MULTILINE).groups < 1:
            raise ValueError("score_pattern needs a group capturing the number")
        return pattern

    @property
    def endpoint(self) -> str:
        base = self.url.rstrip("/")
        return base if base.endswith("/chat/completions") else f"{base}/chat/completions"


def named_values(flags: Sequence[str], flag: str, key: str) -> list[dict[str, str]]:
    """`["rm=/models/rm"]` -> `[{"name": "rm", key: "/models/rm"}]`; ValueError for a flag without '='."""
    parsed = []
    for given in flags:
        name, sep, value = given.partition("=")
        if not sep or not name or not value:
            raise ValueError(f"{flag} {given[:120]!r}: expected NAME=VALUE")
        parsed.append({"name": name, key: value})
    return parsed
