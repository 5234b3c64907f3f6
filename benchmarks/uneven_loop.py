"""The whole loop on uneven completions: packing and partial rollouts against neither, max_staleness 0 and 1.

    uv run python benchmarks/uneven_loop.py                         # 2 alternating pairs of 20-step runs
    uv run python benchmarks/uneven_loop.py --workload /tmp/uneven  # build the workload there once, reuse it
    uv run python benchmarks/uneven_loop.py --record                # also write benchmarks/RESULTS.md

The workload is benchmarks/uneven_workload.py's: the embedded default's 0.8M model warmed up to answer
most problems in a few tokens and a few after up to ~250 tokens of checks, 8 prompts x G 8 per step,
temperature 1, up to 256 new tokens. Every run starts from that same warm model and is `grpo train`
with its own local reward and rollout services, at each `--staleness`, once with neither feature
(`train.packing = false`, `rollout.partial = false`) and once with both (`train.packing = true`, and
`rollout.partial = true` where max_staleness >= 1: a partial completion needs a version behind),
alternating, the order flipped every pair, so that load drifts hit both alike.

Per step (the first pair's runs, from the learner's metrics.jsonl): tokens generated
(`tokens/generated`), token positions the learner computed (`tokens/computed`) and the padding share
of them (`tokens/padding_fraction`), trained tokens per second of the whole step
(`tokens/trained_per_second`), the rollout services' idle fraction (`rollout/idle_fraction`) and the
longest completion over the median (`completions/max_length / completions/median_length`).

Per run: s/step (the median gap between steps, the first two left out), trained tokens/s (prompt +
completion tokens trained in those steps over their wall time), padding fraction (padding over all
positions computed), mean rollout idle fraction, and held-out gain per GRPO-second: the greedy
accuracy on the 200 held-out problems of the run's last model minus the warm model's, in points,
over the training loop's wall time (benchmarks/vs_trl_gain.py's grader and clock). Wall-clock figures
move with the shared machine's load (the provenance line records it); token counts and the padding
fraction do not.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from grpo_runs import RunFigures, final_model, grpo_seconds, run_grpo  # benchmarks/grpo_runs.py
from model_shapes import machine_description  # benchmarks/model_shapes.py
from results_file import Report, add_record_flag  # benchmarks/results_file.py
from uneven_workload import MAX_NEW_TOKENS, Workload, build_workload  # benchmarks/uneven_workload.py
from vs_trl import SHAPES  # benchmarks/vs_trl.py
from vs_trl_gain import greedy_accuracy  # benchmarks/vs_trl_gain.py

SECTION = "Whole loop on uneven completions"  # of benchmarks/RESULTS.md, written with --record

SHAPE = SHAPES["uneven"]  # 8 prompts x G 8, up to MAX_NEW_TOKENS new tokens
TIMED_FROM = 2  # records before this index are warm-up (the first step, and the gap into the second)


@dataclass(frozen=True)
class Setting:
    staleness: int
    features: bool  # train.packing, and rollout.partial where staleness >= 1

    @property
    def partial(self) -> bool:
        return self.features and self.staleness >= 1

    @property
    def flags(self) -> tuple[str, ...]:
        return (
            f"rollout.max_staleness={self.staleness}",
            f"train.packing={str(self.features).lower()}",
            f"rollout.partial={str(self.partial).lower()}",
        )

    @property
    def name(self) -> str:
        features = "packing + partial" if self.partial else "packing" if self.features else "neither"
        return f"max_staleness {self.staleness}, {features}"


@dataclass(frozen=True)
class LoopFigures:
    seconds_per_step: float
    trained_tokens_per_second: float
    padding_fraction: float
    rollout_idle: float
    longest_over_median: float  # median over the timed steps
    gain_points: float
    grpo_seconds: float

    @property
    def gain_per_second(self) -> float:
        return self.gain_points / self.grpo_seconds


def loop_figures(run: RunFigures, gain_points: float) -> LoopFigures:
    """The run's figures (see the module docstring) from its metrics.jsonl records."""
    records, timed = run.records, run.records[TIMED_FROM:]
    elapsed = records[-1]["time"] - records[TIMED_FROM - 1]["time"]
    computed = sum(r["tokens/computed"] for r in timed)
    real = sum(r["tokens/computed"] * (1 - r["tokens/padding_fraction"]) for r in timed)
    ratios = [r["completions/max_length"] / r["completions/median_length"] for r in timed]
    return LoopFigures(
        seconds_per_step=run.seconds_per_step,
        trained_tokens_per_second=sum(r["tokens/trained"] for r in timed) / elapsed,
        padding_fraction=1 - real / computed,
        rollout_idle=run.rollout_idle,
        longest_over_median=statistics.median(ratios),
        gain_points=gain_points,
        grpo_seconds=grpo_seconds(records),
    )


def step_line(record: dict) -> str:
    """One step of item 1's table: what it generated, what the learner computed, how fast, how idle."""
    idle = record.get("rollout/idle_fraction", float("nan"))
    ratio = record["completions/max_length"] / record["completions/median_length"]
    return (
        f"  step {record['step']:3d}: generated {record['tokens/generated']:5.0f}, computed "
        f"{record['tokens/computed']:6.0f} ({record['tokens/padding_fraction']:4.0%} padding), "
        f"{record['tokens/trained_per_second']:6.0f} trained tokens/s, rollout idle {idle:.2f}, "
        f"longest / median {record['completions/max_length']:.0f} / "
        f"{record['completions/median_length']:.0f} = {ratio:.0f}x"
    )


def summary_line(figures: LoopFigures) -> str:
    return (
        f"{figures.seconds_per_step:.2f} s/step, {figures.trained_tokens_per_second:.0f} trained tokens/s, "
        f"padding {figures.padding_fraction:.1%}, rollout idle {figures.rollout_idle:.2f}, "
        f"longest / median {figures.longest_over_median:.0f}x, held-out {figures.gain_points:+.1f} points "
        f"in {figures.grpo_seconds:.0f} GRPO-s = {figures.gain_per_second:.3f} points/s"
    )


def run_setting(
    workload: Workload, setting: Setting, run_dir: Path, steps: int, lr: float, before: float
) -> tuple[LoopFigures, list[dict]]:
    """One `grpo train` run from the warm model, graded on the held-out problems (`before`: the warm
    model's accuracy); its figures and its step records."""
    run = run_grpo(
        SHAPE,
        workload.directory,
        run_dir,
        steps,
        *setting.flags,
        f"optim.lr={lr}",
        f"checkpoint.interval={steps}",
        "local_services.reward_workers=1",
    )
    after = greedy_accuracy(final_model(run_dir), workload.heldout, MAX_NEW_TOKENS)
    return loop_figures(run, (after - before) * 100), run.records


def table(settings: list[Setting], results: dict[Setting, list[LoopFigures]]) -> list[str]:
    """Medians over pairs per setting, then with / without per pair at each staleness."""
    rows = [
        "| setting | s/step | trained tokens/s | padding | rollout idle | longest / median "
        "| held-out points per GRPO-s |",
        "|---|---|---|---|---|---|---|",
    ]
    for setting in settings:
        runs = results[setting]

        def median(field: str, runs: list[LoopFigures] = runs) -> float:
            return statistics.median(getattr(r, field) for r in runs)

        rows.append(
            f"| {setting.name} | {median('seconds_per_step'):.2f} "
            f"| {median('trained_tokens_per_second'):.0f} "
            f"| {median('padding_fraction'):.1%} | {median('rollout_idle'):.2f} "
            f"| {median('longest_over_median'):.0f}x "
            f"| {statistics.median(r.gain_per_second for r in runs):.3f} |"
        )
    lines = ["", *rows, ""]
    for staleness in sorted({s.staleness for s in settings}):
        with_, without = results[Setting(staleness, True)], results[Setting(staleness, False)]
        pairs = [
            w.trained_tokens_per_second / o.trained_tokens_per_second
            for w, o in zip(with_, without, strict=True)
        ]
        steps = [w.seconds_per_step / o.seconds_per_step for w, o in zip(with_, without, strict=True)]
        lines.append(
            f"max_staleness {staleness}: trained tokens/s with / without, pair by pair: "
            f"{', '.join(f'{p:.2f}' for p in pairs)} (median {statistics.median(pairs):.2f}x); "
            f"s/step with / without: {', '.join(f'{p:.2f}' for p in steps)}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="GRPO steps per run")
    parser.add_argument("--pairs", type=int, default=2, help="alternating with / without runs per staleness")
    parser.add_argument("--staleness", default="0,1", help="rollout.max_staleness values, comma-separated")
    parser.add_argument("--lr", type=float, default=1e-4, help="optim.lr of every run (constant)")
    parser.add_argument(
        "--workload", type=Path, help="build the workload here once and reuse it (default: a temp dir)"
    )
    add_record_flag(parser, SECTION)
    args = parser.parse_args()
    torch.set_num_threads(1)  # this process only builds the workload and grades: the runs are grpo train's
    stalenesses = [int(k) for k in args.staleness.split(",")]
    settings = [Setting(k, features) for k in stalenesses for features in (False, True)]
    with Report(SECTION) as report, tempfile.TemporaryDirectory() as tmp:
        root = args.workload or Path(tmp)
        workload = Workload(root)
        if not (workload.model / "config.json").exists():
            workload = build_workload(root)
        print(machine_description("grpo train picks its own; grading 1 thread"), flush=True)
        print(
            f"workload: benchmarks/uneven_workload.py, {SHAPE.prompts_per_step} prompts "
            f"x G {SHAPE.group_size}, "
            f"up to {MAX_NEW_TOKENS} new tokens, temperature 1, lr {args.lr}, {args.steps} steps per run",
            flush=True,
        )
        before = greedy_accuracy(workload.model, workload.heldout, MAX_NEW_TOKENS)
        print(f"warm model: held-out greedy accuracy {before:.1%}", flush=True)
        results: dict[Setting, list[LoopFigures]] = {s: [] for s in settings}
        for pair in range(args.pairs):
            for staleness in stalenesses:
                order = (False, True) if pair % 2 == 0 else (True, False)
                for features in order:
                    setting = Setting(staleness, features)
                    run_dir = Path(tmp) / f"run-{pair}-s{staleness}-{int(features)}"
                    figures, records = run_setting(workload, setting, run_dir, args.steps, args.lr, before)
                    results[setting].append(figures)
                    print(f"pair {pair + 1}, {setting.name}: {summary_line(figures)}", flush=True)
                    if pair == 0:  # item 1's per-step view, once per setting
                        print("\n".join(step_line(r) for r in records), flush=True)
        for line in table(settings, results):
            print(line)
    if args.record:
        print(f"recorded in {report.save(sys.argv)}")


if __name__ == "__main__":
    main()
