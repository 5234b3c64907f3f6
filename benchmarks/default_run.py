"""The embedded default as a user runs it (`uv run grpo train`), and the figures it ends with.

    uv run python benchmarks/default_run.py                                  # the default run
    uv run python benchmarks/default_run.py --record                         # ... into RESULTS.md + docs/
    uv run python benchmarks/default_run.py --config examples/tool-use.toml  # the tool-use run
    uv run python benchmarks/default_run.py --config examples/preference.toml  # against a reward model
    uv run python benchmarks/default_run.py --section "Embedded default run with LoRA" \
        --set model.lora.rank=16 --set optim.lr=2e-3                         # any other settings

Runs `grpo train` (any extra arguments are passed on) in a fresh run directory, then prints what
its `summary.json` and `metrics.jsonl` say: held-out greedy accuracy, pass@1 and maj@8 before and
after GRPO, the wall time (warm-up / GRPO / reported / the whole command, interpreter start
included) and the mean per-step split; a tool-use run adds what its training episodes' tool calls cost
(`episode/seconds_per_tool_call`), a LoRA run how many parameters trained. With `--record` the figures
go into RESULTS.md (section `Embedded <task> run`, or `--section`'s) and, for the default task in its
own section, the run's `curves.png` (drawn by `grpo plot`) becomes `docs/default-run.png`, so the
picture in the README is the recorded run's. Wall times move with the machine's load: the
provenance line records it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from grpo_learner.local.service_processes import find_executable
from grpo_learner.monitoring.metrics import read_metrics
from results_file import DEFAULT_RUN_PICTURE, Report, add_record_flag  # benchmarks/results_file.py

PHASES = ("wait_rollouts", "update", "push")
SHOWN = ("greedy_accuracy", "pass@1", "maj@8", "pass@8", "greedy_accuracy_without_environment")
VALUES = ("greedy_reward", "greedy_completion_chars")  # the preference run: reward model score, length


DEFAULT_SECTION = "Embedded default run"  # the section whose run draws docs/default-run.png


def section_name(summary: dict) -> str:
    return DEFAULT_SECTION if summary["task"] == "arithmetic" else f"Embedded {summary['task']} run"


def tool_call_cost(records: list[dict]) -> list[str]:
    """What the training episodes' tool calls cost, from the GRPO steps' `episode/*` metrics (a tool-use
    run; nothing for a single-turn one): calls per episode, and seconds per call over the steps with one
    (the environment's own step time, rollout's `tool_seconds`)."""
    steps = [r for r in records if r["step"] >= 1 and "episode/tool_calls" in r]
    per_call = [r["episode/seconds_per_tool_call"] for r in steps if "episode/seconds_per_tool_call" in r]
    if not steps:
        return []
    calls = statistics.mean(r["episode/tool_calls"] for r in steps)
    lines = [f"training episodes: {calls:.2f} tool calls per episode (mean over {len(steps)} GRPO steps)"]
    if per_call:
        micro = [seconds * 1e6 for seconds in per_call]
        lines.append(
            f"cost per tool call (episode/seconds_per_tool_call): mean {statistics.mean(micro):,.0f} us, "
            f"min {min(micro):,.0f} us, max {max(micro):,.0f} us over the {len(per_call)} steps with a call"
        )
    return lines


def describe(summary: dict, records: list[dict], command_seconds: float) -> list[str]:
    """The figures of one finished run, one per line."""
    before, after = summary["heldout_before"], summary["heldout_after"]
    gain = 100 * (summary["heldout_accuracy_after"] - summary["heldout_accuracy_before"])
    lines = [
        f"task {summary['task']}, {summary['steps']} GRPO steps, "
        f"{summary['heldout_problems']} held-out problems",
        f"held-out greedy accuracy {summary['heldout_accuracy_before']:.1%} -> "
        f"{summary['heldout_accuracy_after']:.1%} ({gain:+.1f} points)",
    ]
    for metric in SHOWN[1:]:
        if metric in before and metric in after:
            lines.append(f"held-out {metric} {before[metric]:.1%} -> {after[metric]:.1%}")
    ranked = summary.get("reward_model_pair_accuracy")
    if ranked is not None:  # a run against a reward model: its score and the length beside it
        lines += [
            f"held-out {m} {before[m]:.3g} -> {after[m]:.3g}" for m in VALUES if m in before and m in after
        ]
        lines.append(f"reward model: held-out preference pairs ranked right {ranked:.1%}")
    episodes = sorted(k for k in after if k.startswith("episode/") and k in before)  # tool-use runs
    lines += [f"held-out greedy {k} {before[k]:.3g} -> {after[k]:.3g}" for k in episodes]
    lines += tool_call_cost(records)
    if summary["trainable_parameters"] < summary["total_parameters"]:  # LoRA
        lines.append(
            f"trained {summary['trainable_parameters']:,} of {summary['total_parameters']:,} parameters"
        )
    lines.append(
        f"wall time: warm-up {summary['warmup_seconds']:.0f} s, GRPO {summary['grpo_seconds']:.0f} s, "
        f"reported {summary['wall_seconds']:.0f} s, whole command {command_seconds:.0f} s"
    )
    split = [
        f"{phase} {statistics.mean(r[f'timing/{phase}'] for r in records if f'timing/{phase}' in r):.2f}"
        for phase in PHASES
        if any(f"timing/{phase}" in r for r in records)
    ]
    lines.append(f"per step (s, mean): {', '.join(split)}")
    lines.append(f"learner update: {summary['tokens_per_second']:,.0f} tokens/s (mean over steps)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run-dir", type=Path, help="default: a fresh temporary directory")
    parser.add_argument(
        "--section", help="record under this RESULTS.md section (default: 'Embedded <task> run')"
    )
    add_record_flag(parser, "Embedded default run (or 'Embedded <task> run', or --section)")
    args, train_args = parser.parse_known_args()
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="grpo-default-run-"))
    command = [find_executable("grpo"), "train", "--run-dir", str(run_dir), "--no-progress", *train_args]
    report = Report("")  # named once the summary says which task ran
    started = time.monotonic()
    subprocess.run(command, check=True)
    command_seconds = time.monotonic() - started
    summary = json.loads((run_dir / "summary.json").read_text())
    report.section = args.section or section_name(summary)
    with report:
        print(f"{' '.join(['grpo train', *train_args])} (run directory {run_dir})")
        for line in describe(summary, read_metrics(run_dir), command_seconds):
            print(line)
    if args.record:
        report.save(sys.argv)
        if report.section == DEFAULT_SECTION:
            shutil.copyfile(run_dir / "curves.png", DEFAULT_RUN_PICTURE)
            print(f"wrote {DEFAULT_RUN_PICTURE}")


if __name__ == "__main__":
    main()
