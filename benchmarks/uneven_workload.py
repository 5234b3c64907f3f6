"""The uneven-length workload of issue 30: a warm tiny model whose completions are mostly short, a few long.

Reasoning completions are uneven: most stop early, a few run to the limit, and a synchronous step
waits for the longest while a padded learner computes every completion at its length. This builds
that shape on the embedded default's parts, nothing downloaded:

- the problems: the embedded arithmetic task (`37+45=`), its seeded train / held-out split;
- the model: the embedded default's 0.8M-parameter Qwen2 (its character tokenizer), with room for
  `MAX_NEW_TOKENS` new tokens;
- the warm-up: the embedded default's supervised warm-up on transcripts of two kinds. Most answer at
  once (`\\boxed{82}`, 5 tokens with EOS); `LONG_SHARE` of them first check the problem `k` times,
  `k` uniform in `CHECKS` (`37+45=82;` per check, ~9 tokens), then box the answer: up to ~250 tokens,
  the longest cut at `MAX_NEW_TOKENS`. Sampling at temperature 1 the model picks the kind per
  completion and, in a check run, when to stop, so each step of 8 prompts x 8 mixes many short
  completions with a few long ones, and the longest is many times the median (`LONG_SHARE` < 1/2
  keeps the median short).

`build_workload(directory)` writes `directory/model` (HF format), `directory/problems.jsonl` (train)
and `directory/heldout.jsonl`; benchmarks/uneven_loop.py trains on it with `grpo train`.
"""

from __future__ import annotations

import json
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from grpo_learner.embedded.model import tiny_qwen2_config
from grpo_learner.embedded.task import Problem, solution_text, split_problems
from grpo_learner.embedded.tokenizer import build_tokenizer
from grpo_learner.embedded.warmup import encode_example, supervised_warmup
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

MAX_NEW_TOKENS = 256
LONG_SHARE = 0.2  # of warm-up transcripts that check before answering
CHECKS = (1, 28)  # checks in such a transcript, uniform (inclusive): 28 x ~9 tokens reaches the limit
WARMUP_STEPS = 250
WARMUP_BATCH = 32  # a batch pads to its longest transcript (~250 tokens): 32 keeps the warm-up short
SEED = 0


@dataclass(frozen=True)
class Workload:
    directory: Path

    @property
    def model(self) -> Path:
        return self.directory / "model"

    @property
    def train(self) -> Path:
        return self.directory / "problems.jsonl"

    @property
    def heldout(self) -> Path:
        return self.directory / "heldout.jsonl"


def checked_transcript(problem: Problem, rng: random.Random) -> list[tuple[str, bool]]:
    """A correct completion, one trained segment: the bare boxed answer, or (LONG_SHARE of the time)
    `k` checks of the problem (`37+45=82;`) before it."""
    answer = solution_text(problem, rng)
    if rng.random() >= LONG_SHARE:
        return [(answer, True)]
    checks = f"{problem.prompt}{problem.reference};" * rng.randint(*CHECKS)
    return [(checks + answer, True)]


def transcript_lengths(
    tokenizer: PreTrainedTokenizerFast, problems: Sequence[Problem], count: int, seed: int = SEED
) -> list[int]:
    """Completion tokens (EOS included, cut at MAX_NEW_TOKENS) of `count` warm-up transcripts: the
    spread the warm-up teaches."""
    rng = random.Random(seed)
    lengths = []
    for _ in range(count):
        problem = rng.choice(list(problems))
        ids, _ = encode_example(tokenizer, problem, checked_transcript(problem, rng))
        lengths.append(min(MAX_NEW_TOKENS, len(ids) - len(tokenizer(problem.prompt).input_ids)))
    return lengths


def longest_over_median(lengths: Sequence[int]) -> float:
    """max / median of one step's completion lengths: how long the step waits past its typical sequence."""
    return max(lengths) / statistics.median(lengths)


def write_problems(path: Path, problems: Sequence[Problem]) -> None:
    rows = (json.dumps({"question": p.prompt, "answer": p.reference}) for p in problems)
    path.write_text("".join(f"{row}\n" for row in rows))


def build_workload(
    directory: Path, warmup_steps: int = WARMUP_STEPS, batch_size: int = WARMUP_BATCH, seed: int = SEED
) -> Workload:
    """Warm the model up on checked transcripts and write the workload's files (see the docstring)."""
    workload = Workload(directory)
    tokenizer = build_tokenizer()
    config = tiny_qwen2_config(tokenizer)
    config.max_position_embeddings = 64 + MAX_NEW_TOKENS  # the prompt (<= 6 tokens) and the completion
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    train, heldout = split_problems(seed)
    supervised_warmup(
        model, tokenizer, train, checked_transcript, steps=warmup_steps, batch_size=batch_size, seed=seed
    )
    model.generation_config.max_new_tokens = MAX_NEW_TOKENS
    model.save_pretrained(workload.model)
    tokenizer.save_pretrained(workload.model)
    write_problems(workload.train, train)
    write_problems(workload.heldout, heldout)
    return workload
