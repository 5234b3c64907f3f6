"""benchmarks/uneven_workload.py: the warm-up teaches completions whose longest per step is >= 8x the
median, and the builder writes a model with room for the longest."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import torch
from grpo_learner.embedded.task import split_problems
from grpo_learner.embedded.tokenizer import build_tokenizer
from transformers import AutoConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import uneven_workload  # benchmarks/ holds scripts, not a package

STEP = 64  # completions per step of the benchmark: 8 prompts x G 8


def test_the_warmup_teaches_mostly_short_completions_and_a_few_up_to_the_limit():
    train, _ = split_problems(0)
    lengths = uneven_workload.transcript_lengths(build_tokenizer(), train, 10 * STEP)
    assert min(lengths) <= 6 and statistics.median(lengths) <= 8  # a few tokens: `\boxed{82}` + EOS
    assert max(lengths) == uneven_workload.MAX_NEW_TOKENS  # the longest run to the limit
    steps = [lengths[i : i + STEP] for i in range(0, len(lengths), STEP)]
    assert all(uneven_workload.longest_over_median(step) >= 8 for step in steps)


def test_the_builder_writes_the_warm_model_with_room_for_the_longest_completion(tmp_path: Path):
    torch.set_num_threads(1)
    workload = uneven_workload.build_workload(tmp_path, warmup_steps=1, batch_size=2)
    config = AutoConfig.from_pretrained(workload.model)
    assert config.max_position_embeddings >= 6 + uneven_workload.MAX_NEW_TOKENS  # prompt + completion
    heldout = [json.loads(line) for line in workload.heldout.read_text().splitlines()]
    assert len(heldout) == 200 and {"question", "answer"} <= set(heldout[0])
    assert len(workload.train.read_text().splitlines()) > len(heldout)
