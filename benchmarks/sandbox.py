"""The code sandbox's cost: per-item overhead in sequence, and a burst of correct programs at once.

    uv run python benchmarks/sandbox.py [--items 50] [--burst 6] [--rounds 3] [--record]
                                        [--save-json FILE] [--before FILE]

Sequential: a bare `python -I -S -c pass` (the floor any process-per-item grader pays), one `Sandbox.run`
of a trivial program (namespaces, private root, uid drop, rlimits), and the `code` task end to end (one or
ten assert tests); the sandbox's own overhead is the second minus the first.

Burst (issue 25): `--burst` correct programs, each about 0.5 s of CPU work against a 1 s per-test limit,
graded at once from as many threads (as many reward workers would), `--rounds` times. It counts how many
are graded correct, wrong and timed out, and the latency of each item. A wall-clock per-test limit grades
some of them wrong on 2 cores; a CPU-time limit must not. `--save-json` writes the figures (run it on the
commit to compare against, from that checkout's environment: `cd ../old && uv run python
../new/benchmarks/sandbox.py --save-json /tmp/before.json`); `--before` reads them back and prints both, so
both are recorded. `--record` writes what it printed into the section "Sandbox overhead" of
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpo_reward
from grpo_common.sandbox import Sandbox
from grpo_common.sandbox.probe import probe_isolation
from grpo_reward.tasks import TASKS
from model_shapes import machine_description  # benchmarks/model_shapes.py
from results_file import Report, add_record_flag  # benchmarks/results_file.py

SECTION = "Sandbox overhead"  # of benchmarks/RESULTS.md, written with --record

COMPLETION = "```python\ndef add(a, b):\n    return a + b\n```"
WORK = (
    "```python\n"
    + "\n".join(
        [
            "def work(n):",
            "    total = 0",
            "    for i in range(n):",
            "        total += i % 7",
            "    return total",
        ]
    )
    + "\n```\n"
)
WORK_N = 7_000_000  # about 0.5 s of CPU on a 2020s x86 core
WORK_TEST = f"assert work({WORK_N}) == {sum(range(7)) * (WORK_N // 7) + sum(range(WORK_N % 7))}"


def timed(label: str, items: int, run: Callable[[], object]) -> dict[str, float]:
    """Run `run` `items` times; print and return the median and p90 wall time in ms."""
    run()  # warm the page cache and this process's imports
    samples = []
    for _ in range(items):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    figures = {"median_ms": statistics.median(samples), "p90_ms": samples[int(0.9 * (len(samples) - 1))]}
    print(f"{label:<44} median {figures['median_ms']:7.1f} ms   p90 {figures['p90_ms']:7.1f} ms   ({items})")
    return figures


def graded(_: int) -> tuple[str, float]:
    """One burst item: its outcome (correct / wrong / timed_out) and its wall seconds."""
    started = time.perf_counter()
    try:
        result = TASKS["code"](WORK, "", tests=[WORK_TEST], time_limit_s=1.0)
        outcome = "correct" if result.reward == 1.0 else "wrong"
    except Exception as error:  # TaskTimedOut on the new code, unknown to the old
        outcome = "timed_out" if "wall-clock" in str(error) else f"error {error}"
    return outcome, time.perf_counter() - started


def burst(size: int, rounds: int) -> dict[str, object]:
    outcomes: dict[str, int] = {}
    latencies: list[float] = []
    for _ in range(rounds):
        with ThreadPoolExecutor(size) as pool:
            for outcome, seconds in pool.map(graded, range(size)):
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                latencies.append(seconds)
    latencies.sort()
    figures = {
        "items": size * rounds,
        "outcomes": outcomes,
        "median_s": statistics.median(latencies),
        "max_s": latencies[-1],
    }
    print(
        f"burst of {size} x {rounds} rounds: {outcomes}, latency median {figures['median_s']:.2f} s, "
        f"max {figures['max_s']:.2f} s"
    )
    return figures


def measured_code() -> str:
    """The commit of the grpo_reward being measured (this checkout's or another's)."""
    root = Path(grpo_reward.__file__).resolve().parents[4]
    run = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    return run.stdout.strip() or "unknown"


def summary(label: str, figures: dict[str, object]) -> str:
    """One line per measured commit: the burst's outcomes and latencies, the sequential medians."""
    burst_figures: dict[str, object] = figures["burst"]  # type: ignore[assignment]
    return (
        f"{label} (code {figures['commit']}, load {figures['load']}): burst {burst_figures['outcomes']}, "
        f"latency median {burst_figures['median_s']:.2f} s, max {burst_figures['max_s']:.2f} s; "
        f"Sandbox.run {figures['sandbox']['median_ms']:.0f} ms, "  # type: ignore[index]
        f"code item (1 test) {figures['code_1']['median_ms']:.0f} ms"  # type: ignore[index]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--burst", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--save-json", type=Path)
    parser.add_argument("--before", type=Path, help="figures --save-json wrote on the commit to compare with")
    add_record_flag(parser, SECTION)
    args = parser.parse_args()
    with Report(SECTION) as report:
        print(machine_description("sequential items in 1 process; a burst from as many threads"))
        status = probe_isolation()
        print(f"isolation: {status.available} ({status.reason})")
        load_before = os.getloadavg()
        sandbox = Sandbox()
        score = TASKS["code"]
        one = ["assert add(1, 2) == 3"]
        ten = [f"assert add({n}, 1) == {n + 1}" for n in range(10)]
        bare_argv = [sys.executable, "-I", "-S", "-c", "pass"]
        figures: dict[str, object] = {
            "commit": measured_code(),
            "bare": timed("bare python -I -S -c pass", args.items, lambda: subprocess.run(bare_argv)),
            "sandbox": timed(
                "Sandbox.run (trivial program)", args.items, lambda: sandbox.run({"m.py": "pass"}, ["m.py"])
            ),
            "code_1": timed("code task, 1 assert test", args.items, lambda: score(COMPLETION, "", tests=one)),
            "code_10": timed(
                "code task, 10 assert tests", args.items, lambda: score(COMPLETION, "", tests=ten)
            ),
            "burst": burst(args.burst, args.rounds),
        }
        figures["load"] = f"{(load_before[0] + os.getloadavg()[0]) / 2:.1f}"
        print(
            f"burst: {args.burst} correct programs at once (about 0.5 s of CPU each, per-test limit 1 s), "
            f"{args.rounds} rounds, graded by the code task from {args.burst} threads"
        )
        if args.before:
            print(summary("before", json.loads(args.before.read_text())))
        print(summary("after" if args.before else "this commit", figures))
    if args.save_json:
        args.save_json.write_text(json.dumps(figures))
    if args.record:
        print(f"recorded in {report.save(sys.argv)}")


if __name__ == "__main__":
    main()
