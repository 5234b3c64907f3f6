"""What evaluation costs the embedded default: greedy vs 8 sampled completions of its held-out split.

    uv run grpo train --max-steps 2 --run-dir runs/quick    # any run dir with warmup/ + heldout.jsonl
    uv run python benchmarks/eval_cost.py runs/quick

Starts the same local reward + rollout services as `grpo train` (embedded settings), then times one
greedy evaluation (what the default logs every 25 steps) and one sampled evaluation (8 samples per
problem, bucketed for maj@8: what it adds at step 0 and at the end), each after a warm-up call.
The default run's extra cost of the sampled metrics is twice the sampled figure.
On a shared machine wall-clock figures move with the neighbours' load: the load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from grpo_learner.data.prompts import load_prompt_file
from grpo_learner.embedded.default_run import HELDOUT_FILE, embedded_config
from grpo_learner.eval.runner import eval_sampling, run_evaluation
from grpo_learner.local.service_processes import local_services
from model_shapes import machine_description  # benchmarks/model_shapes.py
from results_file import Report, add_record_flag  # benchmarks/results_file.py

SECTION = "Evaluation cost of the embedded default"  # of benchmarks/RESULTS.md, written with --record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    add_record_flag(parser, SECTION)
    args = parser.parse_args()
    config = embedded_config({"run_dir": str(args.run_dir)})
    model = str(args.run_dir / "warmup")
    config = config.model_copy(update={"model": config.model.model_copy(update={"name_or_path": model})})
    prompts = list(load_prompt_file(args.run_dir / HELDOUT_FILE).items)
    with Report(SECTION) as report:
        print(machine_description("rollout 1 torch thread, reward 1 worker"))
        with local_services(
            model, args.run_dir / "bench", config.local_services, max_staleness=0
        ) as services:
            rollout, reward = [services[-1].address], services[0].address

            def timed(sampled: bool) -> tuple[float, dict[str, float]]:
                started = time.monotonic()
                result = asyncio.run(run_evaluation(prompts, config, rollout, reward, sampled=sampled))
                return time.monotonic() - started, result.metrics

            timed(False)  # warm-up
            greedy_s, _ = timed(False)
            both_s, metrics = timed(True)
        sampled_s = both_s - greedy_s
        print(f"held-out problems: {len(prompts)}; max_new_tokens {eval_sampling(config).max_new_tokens}")
        runs = config.train.max_steps // config.eval.every + 1  # at step 0, every `every` steps
        print(f"greedy evaluation: {greedy_s:.1f} s (a default run makes {runs}: {runs * greedy_s:.0f} s)")
        print(
            f"8 samples + maj@8 buckets: {sampled_s:.1f} s "
            f"(twice per default run: {2 * sampled_s:.0f} s extra)"
        )
        print("metrics of the warm-up model:", {k: round(v, 3) for k, v in metrics.items()})
    if args.record:
        report.save(sys.argv)


if __name__ == "__main__":
    main()
