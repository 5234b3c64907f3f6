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

from grpo_learner.eval.estimators import metric_names
from grpo_learner.eval.runner import EvalResult, EvalSettings

SAMPLES_FILE = "samples.jsonl"
SUMMARY_FILE = "summary.json"


def summary(result: EvalResult, settings: EvalSettings, model: str, data: str) -> dict[str, Any]:
    """summary.json: every metric at the top level, then what was evaluated and how."""
    return {
        **{name: result.metrics[name] for name in metric_names(settings.greedy, settings.ks)},
        "problems": len(result.problems),
        "samples_per_problem": settings.samples,
        "k": list(settings.ks),
        "model": model,
        "data": data,
        "sampling": settings.describe_sampling(),
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
