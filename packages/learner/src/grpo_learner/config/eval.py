"""The learner's `[eval]` section: evaluation during `grpo train` and the settings of `grpo eval`."""

from __future__ import annotations

from pathlib import Path

from grpo_common.addresses import parse_address
from grpo_common.config import ConfigSection
from pydantic import Field, field_validator, model_validator


class EvalConfig(ConfigSection):
    """Evaluation: during `grpo train` (every `every` steps) and the settings of `grpo eval`.

    Problems are read like [data] (its field names, prompt template, task and chat template) from
    `data`; the metrics are defined in grpo_learner.eval.estimators.
    """

    data: Path | None = Field(
        None,
        description="JSONL/Parquet problems; None: the embedded default's held-out split (grpo eval: "
        "data.path)",
    )
    every: int = Field(0, ge=0, description="grpo train: steps between evaluations; 0: no evaluation")
    greedy: bool = Field(False, description="one greedy completion per problem: greedy_accuracy")
    samples: int = Field(0, ge=0, description="N sampled completions per problem (pass@k, maj@k); 0: none")
    k: list[int] = Field(
        default_factory=list, description="k of pass@k and maj@k, each <= samples; empty: 1 and samples"
    )
    sample_every: int | None = Field(
        None,
        ge=0,
        description="grpo train: steps between sampled evaluations (None: every `every`; "
        "0: only at step 0 and the end)",
    )
    temperature: float | None = Field(None, gt=0, description="sampled: None = rollout.sampling.temperature")
    max_new_tokens: int | None = Field(
        None,
        gt=0,
        description="None: the model's generation_config.json max_new_tokens, else "
        "rollout.sampling.max_new_tokens",
    )
    max_problems: int | None = Field(None, ge=1, description="evaluate the first M problems only")
    reward_address: str | None = Field(
        None,
        description="host:port of the reward service that buckets answers for maj@k (default: the local one)",
    )

    @field_validator("reward_address")
    @classmethod
    def _host_port(cls, address: str | None) -> str | None:
        return None if address is None else parse_address(address)

    @model_validator(mode="after")
    def _consistent(self) -> EvalConfig:
        bad = [k for k in self.k if not 1 <= k <= self.samples]
        if bad:
            raise ValueError(f"k {bad}: each k must be in 1..samples ({self.samples}); raise eval.samples")
        if self.every and not (self.greedy or self.samples):
            raise ValueError("eval.every is set but nothing is evaluated: set eval.greedy or eval.samples")
        return self

    @property
    def ks(self) -> list[int]:
        """The k values reported: the ones asked, else 1 and N."""
        if not self.samples:
            return []
        return sorted(set(self.k or [1, self.samples]))
