"""`[data]`: the training problems, from a JSONL/Parquet file or a `datasets` hub name."""

from __future__ import annotations

from pathlib import Path

from grpo_common.config import ConfigSection
from pydantic import Field, field_validator


class DataConfig(ConfigSection):
    path: Path | None = Field(None, description="JSONL or Parquet file of problems")
    hub_name: str | None = Field(None, description="a `datasets` name instead of a file, e.g. openai/gsm8k")
    hub_config: str | None = Field(None, description="the dataset's config, e.g. main for openai/gsm8k")
    split: str = Field("train", description="split of the hub dataset")
    question_field: str | None = Field(None, description="default: first of question/problem/prompt")
    answer_field: str | None = Field(None, description="default: first of answer/solution")
    id_field: str | None = Field(None, description="default: the row number")
    prompt_template: str = Field("{question}", description="formatted with question=...")
    apply_chat_template: bool = True
    shuffle: bool = True

    @field_validator("prompt_template")
    @classmethod
    def _formats_with_question_only(cls, template: str) -> str:
        try:
            template.format(question="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"{template!r} does not format with question= alone ({type(exc).__name__}: {exc}); "
                "use {question} for the problem and {{ }} for literal braces"
            ) from None
        return template
