"""Text <-> token ids with the model's own tokenizer (and its chat template when asked).

Prompts are tokenised once here, in the service, so every backend receives token ids and every
group reports the exact prompt tokens the model saw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

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

    @cached_property
    def longest_token_chars(self) -> int:
        """The longest token's text, in the vocabulary's own spelling.

        A token covers at most this many characters of a prompt (byte-level BPE spells each byte as
        one character, so a token's spelling is never shorter than the text it stands for), so a
        text of n characters is at least n / longest_token_chars tokens: the service refuses a text
        too long for the context without tokenising it."""
        return max((len(token) for token in self._tokenizer.get_vocab()), default=1)

    def fewest_tokens(self, text: str) -> int:
        """A lower bound on the tokens `text` encodes to, with room for normalisers that shorten it."""
        return len(text) // (2 * self.longest_token_chars)

    def chars_worth_encoding(self, tokens: int) -> int:
        """How much of a text to encode when only its first `tokens` tokens are kept.

        A prefix of (tokens + 1) * 2 * longest_token_chars characters encodes to more than `tokens` tokens
        (`fewest_tokens`), so cutting a text there before encoding keeps every token that is kept, and a
        text that was cut still comes out over budget. Encoding costs time linear in the text (more for
        one long word), so a 2-million-character observation is cut before, not after."""
        return (tokens + 1) * 2 * self.longest_token_chars

    def render_tool_turn(self, content: str) -> str:
        """What the chat template puts after the model's turn for a tool message holding `content`.

        Rendered as a delta: the conversation [user, assistant MARKER, tool content] with the generation
        prompt, from just after MARKER. So it holds the template's end of the assistant turn (the model's
        turn stopped on `</tool_call>`, before it), the tool turn and the next assistant header.
        """
        marker = "grpo-assistant-turn-end-marker"
        messages = [
            {"role": "user", "content": "."},
            {"role": "assistant", "content": marker},
            {"role": "tool", "content": content},
        ]
        rendered = self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        delta = rendered[rendered.index(marker) + len(marker) :]
        if content not in delta:
            raise ValueError("this model's chat template does not render tool messages")
        return delta

    def encode_tool_turn(self, content: str) -> list[int]:
        """Token ids of `render_tool_turn(content)`: the template's markup with its special tokens, the
        content as plain text, so a tool whose output spells `<|im_end|>` cannot end the turn."""
        marker = "grpo-tool-content-marker"
        pieces = self.render_tool_turn(marker).split(marker)
        ids = self.encode_markup(pieces[0])
        for piece in pieces[1:]:
            ids += self.encode_plain(content) + self.encode_markup(piece)
        return ids

    def encode(self, text: str, chat: bool, tools: Sequence[Mapping[str, Any]] | None = None) -> list[int]:
        """Token ids of a prompt; with `chat` (and a template) as one user turn plus the generation prompt,
        the template given `tools` (an environment's JSON schemas) when there are any."""
        if chat and self.has_chat_template:
            rendered = self._tokenizer.apply_chat_template(
                [{"role": "user", "content": text}],
                tools=list(tools) if tools else None,
                add_generation_prompt=True,
                tokenize=False,
            )
            return list(self._tokenizer(rendered, add_special_tokens=False)["input_ids"])
        return list(self._tokenizer(text, add_special_tokens=True)["input_ids"])

    def encode_plain(self, text: str) -> list[int]:
        """Token ids of `text` as plain text (an observation): no special tokens added, and none read, so
        `</s>` in the text is its characters, never the EOS token."""
        return list(self._tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])

    def encode_markup(self, text: str) -> list[int]:
        """Token ids of `text` alone, no special tokens added but the ones it spells read as such (a chat
        template's markup, a stop string)."""
        return list(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, token_ids: Sequence[int], *, keep_special: bool = False) -> str:
        """Text of `token_ids`; `keep_special` keeps markup tokens (what an environment reads)."""
        return self._tokenizer.decode(list(token_ids), skip_special_tokens=not keep_special)
