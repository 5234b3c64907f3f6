"""Text <-> token ids with the model's own tokenizer (and its chat template when asked).

Prompts are tokenised once here, in the service, so every backend receives token ids and every
group reports the exact prompt tokens the model saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from grpo_common.hf_tokenizer import load_tokenizer
from transformers import PreTrainedTokenizerBase


class PromptEncoder:
    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self._tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, model: str | Path) -> PromptEncoder:
        return cls(load_tokenizer(model))

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self._tokenizer, "chat_template", None))

    @property
    def eos_token_id(self) -> int | None:
        return self._tokenizer.eos_token_id

    def encode(self, text: str, chat: bool) -> list[int]:
        """Token ids of a prompt; with `chat` (and a template) as one user turn plus the generation prompt."""
        if chat and self.has_chat_template:
            rendered = self._tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
            )
            return list(self._tokenizer(rendered, add_special_tokens=False)["input_ids"])
        return list(self._tokenizer(text, add_special_tokens=True)["input_ids"])

    def encode_plain(self, text: str) -> list[int]:
        """Token ids of `text` alone, no special tokens added (an observation, a stop string)."""
        return list(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, token_ids: Sequence[int], *, keep_special: bool = False) -> str:
        """Text of `token_ids`; `keep_special` keeps markup tokens (what an environment reads)."""
        return self._tokenizer.decode(list(token_ids), skip_special_tokens=not keep_special)
