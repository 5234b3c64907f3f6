"""A Qwen2-sized byte-level BPE tokenizer trained in code: real-size vocabulary, no download.

Real checkpoints (Qwen2.5, Llama 3) have ~150k-entry byte-level BPE tokenizers; what grows with the
vocabulary (logits, log-softmax, entropy, the embedding and its push) only shows at that size. This
builds one that behaves like Qwen2.5-Instruct's where it matters here:

- byte-level BPE with Qwen2's pre-tokenizer split, merges learned by `tokenizers`' trainer from
  text generated below (arithmetic word problems, chat turns, tool calls in JSON, a little code);
- exactly `QWEN2_VOCAB_SIZE` (151,936) entries: the learned tokens, then `<|reserved_N|>` fillers
  (in the vocabulary, so a model's sampler can draw them and they decode, but no merge makes them),
  and Qwen2.5's special tokens at Qwen2.5's ids (`<|endoftext|>` 151643 is the pad token,
  `<|im_end|>` 151645 the end of a turn and the EOS token, `<tool_call>` 151657 ...);
- Qwen2.5's chat template (system / user / assistant turns, `tools=` in the system turn, tool
  results as `<tool_response>` in a user turn), with a neutral default system prompt.

`save_bpe_tokenizer(dir)` writes it in Hugging Face format, so `AutoTokenizer.from_pretrained(dir)`
(and `grpo_common.hf_tokenizer.load_tokenizer`) load it like a hub model. Training takes about a
second; `build_bpe_tokenizer()` caches the result per process, so a test session pays once.
Needs `tokenizers` and `transformers`, which only the packages that run models install.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

QWEN2_VOCAB_SIZE = 151_936
LEARNED_TOKENS = 8_000  # learned vocabulary (bytes + merges) before the fillers; the corpus caps it
FIRST_SPECIAL_ID = 151_643  # Qwen2.5's <|endoftext|>
PAD_TOKEN, EOS_TOKEN = "<|endoftext|>", "<|im_end|>"
SPECIAL_TOKENS = (  # Qwen2.5's added tokens, ids FIRST_SPECIAL_ID onwards, in this order
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>",
    "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
)  # fmt: skip
# Tokens the template and the tool format write that Qwen2.5 treats as text, not as special tokens.
NON_SPECIAL = frozenset({"<tool_call>", "</tool_call>"})
# Qwen2's pre-tokenizer: contractions, letters, single digits, punctuation runs, newlines, spaces.
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."

# Qwen2.5-Instruct's template (tools in the system turn, <tool_call> JSON, tool results as a user
# turn of <tool_response> blocks), its default system prompt replaced by a neutral one.
CHAT_TEMPLATE = (
    "{%- if tools %}{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}"
    "{%- else %}{{- '" + DEFAULT_SYSTEM_PROMPT + "' }}{%- endif %}"
    '{{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n'
    'You are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}'
    '{%- for tool in tools %}{{- "\\n" }}{{- tool | tojson }}{%- endfor %}'
    '{{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and '
    "arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n"
    '{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}'
    "{%- else %}{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\n" + DEFAULT_SYSTEM_PROMPT + "<|im_end|>\\n' }}"
    "{%- endif %}{%- endif %}"
    "{%- for message in messages %}"
    '{%- if (message.role == "user") or (message.role == "system" and not loop.first) or '
    '(message.role == "assistant" and not message.tool_calls) %}'
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- elif message.role == \"assistant\" %}{{- '<|im_start|>' + message.role }}"
    "{%- if message.content %}{{- '\\n' + message.content }}{%- endif %}"
    "{%- for tool_call in message.tool_calls %}"
    "{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}"
    '{{- \'\\n<tool_call>\\n{"name": "\' }}{{- tool_call.name }}{{- \'", "arguments": \' }}'
    "{{- tool_call.arguments | tojson }}{{- '}\\n</tool_call>' }}{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    '{%- elif message.role == "tool" %}'
    '{%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}'
    "{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' }}{{- message.content }}{{- '\\n</tool_response>' }}"
    "{%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}{{- '<|im_end|>\\n' }}"
    "{%- endif %}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

_VOCABULARY = (
    "the a an of to and in is was for on that with as at by from it this be are or have has had not "
    "what how many much more less than each total left after before there their they he she we you "
    "number sum difference product answer question step reason final result value equal equals "
    "apples books coins marbles pages miles hours minutes dollars cents students friends boxes "
    "buys sells gives takes reads walks runs costs shares splits doubles halves adds subtracts "
    "first second third then next finally so therefore because if when while every all some none "
    "call function tool arguments expression calculator python print return def import assistant "
    "user system please think carefully write check compute solve explain show work"
)
_WORDS = tuple(_VOCABULARY.split())
_NAMES = ("Alice", "Bob", "Carol", "Dan", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Olivia")


def training_corpus(lines: int = 6_000, seed: int = 0) -> Iterator[str]:
    """Text the project's tasks look like: word problems with \\boxed answers, chat turns, JSON
    tool calls and results, Python lines. Deterministic for a seed (the merges, hence the ids, too)."""
    rng = random.Random(seed)
    for i in range(lines):
        a, b = rng.randint(0, 999), rng.randint(1, 999)
        name = rng.choice(_NAMES)
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 18)))
        kind = i % 5
        if kind == 0:
            yield f"{name} has {a} apples and buys {b} more. How many apples does {name} have now?"
            yield f"{name} has {a} + {b} = {a + b} apples, so the answer is \\boxed{{{a + b}}}."
        elif kind == 1:
            yield f"<|im_start|>user\n{words.capitalize()}?<|im_end|>\n"
            yield f"<|im_start|>assistant\n{words}.<|im_end|>"
        elif kind == 2:
            call = {"name": "calculator", "arguments": {"expression": f"{a}*{b}"}}
            yield f"<tool_call>\n{json.dumps(call)}\n</tool_call>"
            yield f"<tool_response>\n{a * b}\n</tool_response>"
        elif kind == 3:
            yield f"def f_{i}(x, y):\n    return x * {a} + y - {b}  # {words}\nprint(f_{i}({a}, {b}))"
        else:
            yield f"What is {a}/{b}? {words.capitalize()}. \\frac{{{a}}}{{{b}}} = {a / b:.4f}"


@functools.cache
def _trained_core() -> str:
    """The whole tokenizer as `tokenizers` JSON (cached: training is the only slow part)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainee = Tokenizer(models.BPE())
    trainee.normalizer = normalizers.NFC()
    trainee.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=LEARNED_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=list(SPECIAL_TOKENS),  # never split while training: learned around, not into
        show_progress=False,
    )
    trainee.train_from_iterator(training_corpus(), trainer=trainer)
    learned = json.loads(trainee.to_str())["model"]
    vocab = {t: i for t, i in learned["vocab"].items() if t not in SPECIAL_TOKENS}
    vocab = {token: index for index, token in enumerate(sorted(vocab, key=vocab.__getitem__))}
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
    for index in range(len(vocab), QWEN2_VOCAB_SIZE):
        if FIRST_SPECIAL_ID <= index < FIRST_SPECIAL_ID + len(SPECIAL_TOKENS):
            vocab[SPECIAL_TOKENS[index - FIRST_SPECIAL_ID]] = index
        else:
            vocab[f"<|reserved_{index}|>"] = index
    core = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    core.normalizer = normalizers.NFC()
    core.pre_tokenizer = pre_tokenizer
    core.decoder = decoders.ByteLevel()
    from tokenizers import AddedToken

    core.add_special_tokens(
        [AddedToken(t, special=t not in NON_SPECIAL, normalized=False) for t in SPECIAL_TOKENS]
    )
    return core.to_str()


def build_bpe_tokenizer() -> PreTrainedTokenizerFast:
    """A fresh tokenizer object (the trained core is cached; callers may mutate what they get)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_trained_core()),
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        padding_side="left",
        model_max_length=32_768,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def save_bpe_tokenizer(directory: str | Path) -> Path:
    """Write the tokenizer in Hugging Face format into `directory` (e.g. next to a model's config)."""
    build_bpe_tokenizer().save_pretrained(str(directory))
    return Path(directory)
