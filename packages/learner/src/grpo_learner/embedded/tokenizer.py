"""A character-level tokenizer built in code, saved in Hugging Face format.

Every character of the task is one token, except a few LaTeX commands (`\\boxed{`, `\\frac`) that
are one token each so that answers stay short. Saved as a `PreTrainedTokenizerFast`, it loads
with `AutoTokenizer.from_pretrained(path)` in any process, with no download and no custom code.
"""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
MULTI_CHAR_TOKENS = ("\\boxed{", "\\frac")
CHARACTERS = "0123456789+-*/=.{}()? ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz:,"


def build_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {PAD: 0, BOS: 1, EOS: 2}
    for token in (*MULTI_CHAR_TOKENS, *CHARACTERS):
        vocab.setdefault(token, len(vocab))
    vocab["<unk>"] = len(vocab)
    alternatives = "|".join(token.replace("\\", "\\\\").replace("{", "\\{") for token in MULTI_CHAR_TOKENS)
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
