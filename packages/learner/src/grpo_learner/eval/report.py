"""What `grpo eval` writes and prints: samples.jsonl, summary.json and a table.

samples.jsonl has one line per completion: problem_id, kind ("greedy" or "sampled"),
sample_index, text, extracted (null when no answer was found), correct, reward, timed_out, episode
(a multi-turn episode's turns, tool calls, ...; null when single-turn) and, for sampled ones, bucket
(the maj@k vote bucket; -1: no answer). Every figure of summary.json can
be recomputed from it with the definitions in estimators.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from grpo_learner.config import LearnerConfig, SamplingConfig
from grpo_learner.eval.estimators import metric_names
from grpo_learner.eval.runner import EvalResult

SAMPLES_FILE = "samples.jsonl"
SUMMARY_FILE = "summary.json"


def summary(
    result: EvalResult, config: LearnerConfig, sampling: SamplingConfig, model: str, data: str
) -> dict[str, Any]:
    """summary.json: every metric at the top level, then what was evaluated and how (`sampling`: the
    one the evaluation drew its samples with, `runner.eval_sampling`)."""
    e = config.eval
    return {
        **{name: result.metrics[name] for name in metric_names(e.greedy, e.ks)},
        "problems": len(result.problems),
        "samples_per_problem": e.samples,
        "k": list(e.ks),
        "model": model,
        "data": data,
        "sampling": {
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": sampling.top_k,
            "max_new_tokens": sampling.max_new_tokens,
            "seed": config.train.seed,
            "greedy": e.greedy,
            "samples": e.samples,
            "apply_chat_template": config.data.apply_chat_template,
        },
    }


def write_outputs(out: Path, result: EvalResult, summary_record: Mapping[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / SAMPLES_FILE).open("w") as f:
        for sample in result.samples:
            row = asdict(sample)
            if sample.kind == "greedy":
                row.pop("bucket")
            f.write(json.dumps(row) + "\n")
    (out / SUMMARY_FILE).write_text(json.dumps(summary_record, indent=2) + "\n")


def print_summary(summary_record: Mapping[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    names = [k for k in summary_record if k == "greedy_accuracy" or "@" in k]
    console.print(f"model: {summary_record['model']}\ndata:  {summary_record['data']}")
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in names:
        table.add_row(name, f"{100 * summary_record[name]:.1f}%")
    table.add_row("problems", str(summary_record["problems"]))
    table.add_row("samples per problem", str(summary_record["samples_per_problem"]))
    console.print(table)
