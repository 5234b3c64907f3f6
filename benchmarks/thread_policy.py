"""The CPU thread policy of `grpo train` with local services: split cores against all cores per phase.

    uv run python benchmarks/thread_policy.py [--pairs 3] [--steps 40] [--staleness 0] [--record]

The embedded default's GRPO (its own warm model, reward and rollout services), run alternately
under two policies from one warm-up (written once, copied into every run directory):

- split: the rollout service gets half the cores and the learner the rest (`local_services.
  torch_threads`, `train.torch_threads`), whether or not the two compute at the same time;
- all: each gets every core. At `max_staleness = 0` the phases take turns (the learner waits for
  the rollout's groups, then the rollout waits for the learner's weights) and both wait passively
  (`OMP_WAIT_POLICY=PASSIVE`, which `grpo train` sets), so the phase that runs has the whole box.

Per run: the median seconds per GRPO step (the first step left out) and its generate / update
split from metrics.jsonl, the GRPO seconds and the whole command's; per pair the ratio all / split,
and the median over pairs. Both arms train the same model on the same data with the same seed:
their held-out accuracy is printed beside them (threads change float summation order only).
The machine is shared: each run prints the load average at its start and end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from grpo_learner.local.service_processes import find_executable
from grpo_learner.monitoring.metrics import read_metrics
from results_file import Report, add_record_flag  # benchmarks/results_file.py

SECTION = "CPU thread policy: split cores against all cores per phase"  # of benchmarks/RESULTS.md
PHASES = ("step", "generate", "update")


def policies(cores: int) -> dict[str, tuple[int, int]]:
    """(rollout threads, learner threads) of each arm."""
    rollout = max(1, cores // 2)
    return {"split": (rollout, max(1, cores - rollout)), "all": (cores, cores)}


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def run(name: str, threads: tuple[int, int], warm: Path, root: Path, args: argparse.Namespace) -> dict:
    run_dir = root / f"{name}-{len(list(root.iterdir()))}"
    run_dir.mkdir()
    if warm.exists():
        shutil.copytree(warm, run_dir / "warmup")
    rollout, learner = threads
    settings = {
        "train.max_steps": args.steps,
        "eval.every": args.steps,
        "rollout.max_staleness": args.staleness,
        "local_services.torch_threads": rollout,
        "train.torch_threads": learner,
    }
    command = [find_executable("grpo"), "train", "--run-dir", str(run_dir), "--no-progress"]
    for key, value in settings.items():
        command += ["--set", f"{key}={value}"]
    at_start = load()
    started = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    whole = time.monotonic() - started
    if not warm.exists():
        shutil.copytree(run_dir / "warmup", warm)
    summary = json.loads((run_dir / "summary.json").read_text())
    records = [r for r in read_metrics(run_dir) if "timing/step" in r][1:]
    phases = {p: statistics.median(r[f"timing/{p}"] for r in records if f"timing/{p}" in r) for p in PHASES}
    figures = {"whole": whole, "grpo": summary["grpo_seconds"], **phases}
    print(
        f"{name:5s} (rollout {rollout}, learner {learner} threads): "
        + ", ".join(f"{p} {phases[p]:.3f}" for p in PHASES)
        + f" s/step (median); GRPO {summary['grpo_seconds']:.0f} s, whole command {whole:.0f} s; "
        f"held-out {summary['heldout_accuracy_before']:.1%} -> {summary['heldout_accuracy_after']:.1%}; "
        f"load {at_start} -> {load()}",
        flush=True,
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40, help="GRPO steps per run")
    parser.add_argument("--staleness", type=int, default=0, help="rollout.max_staleness")
    add_record_flag(parser, SECTION)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    arms = policies(cores)
    root = Path(tempfile.mkdtemp(prefix="grpo-thread-policy-"))
    warm = root / "warm"
    with Report(SECTION) as report:
        print(
            f"`grpo train` (embedded default, {args.steps} steps, max_staleness {args.staleness}) on "
            f"{cores} cores, {args.pairs} alternating pairs, the first run's warm-up reused"
        )
        ratios: dict[str, list[float]] = {"step": [], "grpo": []}
        for pair in range(args.pairs):
            order = list(arms) if pair % 2 == 0 else list(reversed(arms))
            figures = {name: run(name, arms[name], warm, root, args) for name in order}
            for key, values in ratios.items():
                values.append(figures["all"][key] / figures["split"][key])
            print(
                f"pair {pair + 1}: all / split: step {ratios['step'][-1]:.2f}, GRPO {ratios['grpo'][-1]:.2f}"
            )
        for key, values in ratios.items():
            each = ", ".join(f"{v:.2f}" for v in values)
            median = statistics.median(values)
            print(f"all / split, {key}: median {median:.2f} over {len(values)} pairs ({each})")
    shutil.rmtree(root, ignore_errors=True)
    if args.record:
        report.save(sys.argv)


if __name__ == "__main__":
    main()
