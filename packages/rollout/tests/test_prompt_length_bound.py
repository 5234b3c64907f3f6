"""PromptEncoder.fewest_tokens is a lower bound on the real token count, for byte-level BPE too.

The service refuses a text prompt too long for the context from this bound, without tokenising it
(test_service.py's "text beyond context" case); if the bound were ever above the real count, a
prompt that fits would be refused. Checked on the tests' character tokenizer and on a byte-level BPE
trained here, over ASCII, accented, CJK, emoji and whitespace-heavy texts.
"""

from __future__ import annotations

import random

from grpo_rollout.prompt_encoding import PromptEncoder
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

ALPHABETS = [
    "abcdefghijklmnopqrstuvwxyz ",
    "0123456789+-*/=() ",
    "éàüßçñ øå ",
    "数学问题答案是多少 ",
    "😀🚀∑∫√π ",
    " \n\t    ",
]


def texts(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        alphabet = "".join(rng.sample(ALPHABETS, rng.randint(1, 3)))
        out.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 400))))
    return out


def byte_level_bpe() -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    corpus = [*texts(300, seed=1), "the answer is " * 20, "        " * 40, "1234567890" * 30]
    tokenizer.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>")


def test_fewest_tokens_never_exceeds_the_real_count(tokenizer: PreTrainedTokenizerFast) -> None:
    bpe = byte_level_bpe()
    assert PromptEncoder(bpe).longest_token_chars >= 8  # merges made long tokens: the bound is tested
    for candidate in (tokenizer, bpe):
        encoder = PromptEncoder(candidate)
        for text in [*texts(400), "        " * 200, "x" * 3000]:
            assert encoder.fewest_tokens(text) <= len(encoder.encode(text, chat=False)), text[:40]
