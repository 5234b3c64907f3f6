"""The code sandbox's overhead per item: a trivial program, N items, one after another.

    uv run python benchmarks/sandbox.py [--items 50]

Three timings per item: a bare `python -I -S -c pass` (the floor any process-per-item grader pays), one
`Sandbox.run` of a trivial program (namespaces, read-only root, tmpfs, uid drop, rlimits, exec), and the
`code` task end to end (extract, compile, sandbox, harness, one or ten assert tests). The sandbox's own
overhead is the second minus the first. Items run sequentially in this process, as in one reward worker.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from grpo_common.sandbox import Sandbox
from grpo_common.sandbox.probe import probe_isolation
from grpo_reward.tasks import TASKS
from model_shapes import machine_description  # benchmarks/model_shapes.py
from results_file import Report, add_record_flag  # benchmarks/results_file.py

SECTION = "Sandbox overhead"  # of benchmarks/RESULTS.md, written with --record

COMPLETION = "```python\ndef add(a, b):\n    return a + b\n```"


def timed(label: str, items: int, run: Callable[[], object]) -> float:
    """Run `run` `items` times; print and return the median wall time in ms."""
    run()  # warm the page cache and this process's imports
    samples = []
    for _ in range(items):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    median = statistics.median(samples)
    p90 = samples[int(0.9 * (len(samples) - 1))]
    print(f"{label:<44} median {median:7.1f} ms   p90 {p90:7.1f} ms   ({items} items)")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=50)
    add_record_flag(parser, SECTION)
    args = parser.parse_args()
    with Report(SECTION) as report:
        print(machine_description("1 process, items in sequence"))
        status = probe_isolation()
        print(f"isolation: {status.available} ({status.reason})")
        sandbox = Sandbox()
        score = TASKS["code"]
        ten = [f"assert add({n}, 1) == {n + 1}" for n in range(10)]
        bare = timed(
            "bare python -I -S -c pass",
            args.items,
            lambda: subprocess.run([sys.executable, "-I", "-S", "-c", "pass"]),
        )
        boxed = timed(
            "Sandbox.run (trivial program)", args.items, lambda: sandbox.run({"m.py": "pass"}, ["m.py"])
        )
        one = ["assert add(1, 2) == 3"]
        timed("code task, 1 assert test", args.items, lambda: score(COMPLETION, "", tests=one))
        timed("code task, 10 assert tests", args.items, lambda: score(COMPLETION, "", tests=ten))
        print(f"sandbox overhead over a bare process: {boxed - bare:.1f} ms per item")
    if args.record:
        report.save(sys.argv)


if __name__ == "__main__":
    main()
