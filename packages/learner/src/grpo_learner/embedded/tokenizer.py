"""A character-level tokenizer built in code, saved in Hugging Face format.

Every character of the task is one token, except a few LaTeX commands (`\\boxed{`, `\\frac`) that
are one token each so that answers stay short, and whatever markup a task adds (`extra_tokens`, e.g.
the tool-use task's `<calc>`, `</calc>`, `<result>`, `</result>`: one token each, so a turn can stop
on one of them). Saved as a `PreTrainedTokenizerFast`, it loads
with `AutoTokenizer.from_pretrained(path)` in any process, with no download and no custom code.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
MULTI_CHAR_TOKENS = ("\\boxed{", "\\frac")
CHARACTERS = "0123456789+-*/=.{}()? ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz:,"


def build_tokenizer(extra_tokens: Sequence[str] = ()) -> PreTrainedTokenizerFast:
    """The default vocabulary, then `extra_tokens` (ids after it, so the default's ids never move)."""
    vocab = {PAD: 0, BOS: 1, EOS: 2}
    for token in (*MULTI_CHAR_TOKENS, *CHARACTERS):
        vocab.setdefault(token, len(vocab))
    vocab["<unk>"] = len(vocab)
    for token in extra_tokens:
        vocab.setdefault(token, len(vocab))
    multi = sorted((*MULTI_CHAR_TOKENS, *extra_tokens), key=len, reverse=True)  # longest match first
    alternatives = "|".join(re.escape(token) for token in multi)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(f"{alternatives}|."), behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token="<unk>",
        padding_side="left",
    )
