"""Partial rollouts on and off at max_staleness = 1: does `rollout.partial` pay on this machine?

    uv run python benchmarks/partial_rollouts.py            # 2 alternating pairs of 16-step runs
    uv run python benchmarks/partial_rollouts.py --record   # also write benchmarks/RESULTS.md

`grpo train` on the 0.8M shape of vs_trl.py (random weights, so completions run to max_new_tokens),
local services, `rollout.max_staleness = 1`, once with `rollout.partial = false` and once with
`true`, alternating so that load drifts hit both. Per run: seconds per step (median gap), the
learner's tokens/s, the rollout idle fraction, how many completions per step lived through a
weight update (`completions/multi_version`) and the share of trained tokens a version older than
the learner's sampled (`sampler/stale_tokens`; without partial rollouts, every token of a group
generated while the previous step trained). Timings on a shared machine move with its load (the provenance
line records it); the completion and token counts do not.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from grpo_runs import RunShape, phase_line, run_grpo, write_assets  # benchmarks/grpo_runs.py
from model_shapes import machine_description  # benchmarks/model_shapes.py
from results_file import Report, add_record_flag  # benchmarks/results_file.py
from vs_trl import TINY  # benchmarks/vs_trl.py

SECTION = "Partial rollouts at max_staleness = 1"  # of benchmarks/RESULTS.md, written with --record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    add_record_flag(parser, SECTION)
    args = parser.parse_args()
    shape = RunShape("1m", TINY, max_new_tokens=args.max_new_tokens)
    with Report(SECTION) as report, tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        params = write_assets(shape, directory)
        machine = machine_description("grpo train picks its own")
        print(f"{machine}; {params / 1e6:.2f}M parameters, {args.max_new_tokens} new tokens")
        per_step: dict[bool, list[float]] = {False: [], True: []}
        for pair in range(args.pairs):
            for partial in (False, True):
                run_dir = directory / f"run-{pair}-{partial}"
                figures = run_grpo(
                    shape,
                    directory,
                    run_dir,
                    args.steps,
                    "rollout.max_staleness=1",
                    f"rollout.partial={str(partial).lower()}",
                )
                timed = figures.records[2:]
                spanning = statistics.fmean(r.get("completions/multi_version", 0.0) for r in timed)
                stale = statistics.fmean(r.get("sampler/stale_tokens", 0.0) for r in timed)
                per_step[partial].append(figures.seconds_per_step)
                print(
                    f"pair {pair} partial={partial}: {figures.seconds_per_step:.3f} s/step, "
                    f"{figures.tokens_per_second:.0f} tokens/s, completions across an update "
                    f"{spanning:.1f} per step, stale token share {stale:.3f}; {phase_line(figures)}"
                )
        ratios = [on / off for on, off in zip(per_step[True], per_step[False], strict=True)]
        print("s/step partial on / off, pair by pair: " + ", ".join(f"{r:.3f}" for r in ratios))
    if args.record:
        print(f"recorded in {report.save(sys.argv)}")


if __name__ == "__main__":
    main()
