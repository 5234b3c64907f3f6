"""Accuracy, throughput and worst-case latency of grpo-reward's verifier next to Hugging Face Math-Verify.

    uv run --group bench python benchmarks/verifier.py [--repeat 3]

Both graders see the same labelled cases (packages/reward/tests/cases/math_cases.jsonl). Math-Verify gets
the completion as is and the reference answer wrapped in `$...$` (its documented usage), and runs
single-threaded in the main thread (its signal-based timeouts need that). grpo-reward runs as a `Verifier`
with one worker per CPU, as a trainer would use it (task `math`, dispatched through the task registry).
Throughput is measured on the non-adversarial cases. The load average is printed with the timeouts: the
per-item limit counts worker CPU seconds, so load slows items down but should not time them out.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

import grpo_reward
from grpo_reward import Verifier
from grpo_reward.extraction import extract_reference
from results_file import BENCH_GROUP, Report, add_record_flag  # benchmarks/results_file.py

SECTION = "Verifier against Math-Verify"  # of benchmarks/RESULTS.md, written with --record

CASES_PATH = Path(__file__).resolve().parents[1] / "packages/reward/tests/cases/math_cases.jsonl"
ADVERSARIAL = {
    "power tower 10^10^10^10": r"\boxed{10^{10^{10^{10}}}}",
    "(10^100)!": r"\boxed{(10^{100})!}",
    "10,000-deep braces": r"\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}",
    "2 MB completion": "x" * 2_000_000 + r"\boxed{5}",
    "huge sum": r"\boxed{\sum_{k=1}^{10^{10}} k^k}",
    "hard integral": r"\boxed{\int_0^1 e^{x^{x^x}} \sin(x^{x}) dx}",
    "9^9^9^9": r"\boxed{9^{9^{9^{9}}}}",
    "huge binomial": r"\boxed{\binom{10^{100}}{10^{50}}}",
    # shapes that once cost super-linear time before the worker (tests/test_linear_time.py has them all)
    "1M chars of unclosed \\boxed{": r"\boxed{" * 142_857,
    "'answer' + 20,000 blanks": "answer" + " " * 19_990 + "!",
    "unit-like words after 1": r"\boxed{1 " + "a" * 3_900 + "!}",
}


def math_verify_grade(completion: str, reference: str) -> bool:
    from math_verify import parse, verify

    try:
        gold = parse(f"${extract_reference(reference)}$")
        answer = parse(completion)
        return bool(verify(gold, answer))
    except Exception:
        return False


def accuracy_by_category(cases: list[dict], predictions: list[bool]) -> tuple[float, dict[str, str]]:
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for case, predicted in zip(cases, predictions, strict=True):
        total[case["category"]] += 1
        right[case["category"]] += predicted == case["correct"]
    per_category = {name: f"{right[name]}/{total[name]}" for name in sorted(total)}
    return sum(right.values()) / len(cases), per_category


def cpu_ms_by_category(cases: list[dict], repeat: int) -> dict[str, float]:
    """CPU milliseconds one case costs to grade in this process (the quick path, then `check`, as a worker
    does), averaged by category. Load stretches the wall clock, not the CPU a case needs, so this figure
    compares two versions of the verifier across runs on a shared machine; caches are warm, as in a GRPO
    group whose references repeat."""
    from grpo_reward.check import check, quick_check
    from grpo_reward.verdict import Verdict

    def grade(case: dict) -> None:
        if not isinstance(quick_check(case["completion"], case["reference"]), Verdict):
            check(case["completion"], case["reference"])

    for case in cases:
        grade(case)
    seconds: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for case in cases:
        start = time.process_time()
        for _ in range(repeat):
            grade(case)
        seconds[case["category"]] += time.process_time() - start
        counts[case["category"]] += repeat
    seconds["ALL"], counts["ALL"] = sum(seconds.values()), sum(counts.values())
    return {name: 1000 * seconds[name] / counts[name] for name in counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="passes over the normal cases for throughput")
    parser.add_argument("--skip-math-verify-adversarial", action="store_true")
    add_record_flag(parser, SECTION)
    parser.add_argument(
        "--section",
        default=SECTION,
        help="the RESULTS.md section --record writes (name another to keep a before/after pair)",
    )
    args = parser.parse_args()
    with Report(args.section, runner=BENCH_GROUP) as report:
        # Math-Verify logs every timeout with the full input
        logging.getLogger("math_verify").setLevel(logging.CRITICAL)
        cases = [json.loads(line) for line in CASES_PATH.open()]
        normal = [case for case in cases if case["category"] != "adversarial"]
        machine = f"{os.cpu_count()} CPUs, {platform.platform()}, {platform.machine()}"
        print(f"machine: {machine}, Python {platform.python_version()}")
        print(f"grpo_reward measured: {Path(grpo_reward.__file__).parent}")
        print(f"cases: {len(cases)} ({len(normal)} normal, {len(cases) - len(normal)} adversarial)\n")

        with Verifier() as verifier:
            verifier.wait_ready(120)
            graded_ours = verifier.verify_many([(c["completion"], c["reference"]) for c in cases])
            ours = [verdict.correct for verdict in graded_ours]
            load = os.getloadavg()[0]
            pairs_graded = zip(cases, graded_ours, strict=True)
            timeouts = sum(v.timed_out for case, v in pairs_graded if case["category"] != "adversarial")
            pairs = [(c["completion"], c["reference"]) for c in normal] * args.repeat
            start = time.perf_counter()
            verifier.verify_many(pairs)
            ours_rate = len(pairs) / (time.perf_counter() - start)
            latencies = {}
            for name, completion in ADVERSARIAL.items():
                verifier.wait_ready(60)
                start = time.perf_counter()
                verdict = verifier.verify(completion, "5")
                latencies[name] = (time.perf_counter() - start, verdict.reason)

        cpu_ms = cpu_ms_by_category(normal, args.repeat)
        graded = cases if not args.skip_math_verify_adversarial else normal
        theirs = [math_verify_grade(c["completion"], c["reference"]) for c in graded]
        start = time.perf_counter()
        for _ in range(args.repeat):
            for case in normal:
                math_verify_grade(case["completion"], case["reference"])
        theirs_rate = len(normal) * args.repeat / (time.perf_counter() - start)

        our_accuracy, our_categories = accuracy_by_category(cases, ours)
        their_accuracy, their_categories = accuracy_by_category(graded, theirs)
        print(f"{'category':20} {'grpo-reward':>12} {'Math-Verify':>12} {'CPU ms/case':>12}")
        for name in our_categories:
            ms = f"{cpu_ms[name]:.3f}" if name in cpu_ms else "-"
            print(f"{name:20} {our_categories[name]:>12} {their_categories.get(name, '-'):>12} {ms:>12}")
        print(f"{'ACCURACY':20} {our_accuracy:12.1%} {their_accuracy:12.1%} {cpu_ms['ALL']:12.3f}")
        print("(CPU ms/case: grpo-reward in this process, quick path then check, normal cases, caches warm)")
        print(f"normal cases timed out (grpo-reward, 1 s CPU limit): {timeouts}, load average {load:.1f}\n")
        print(f"throughput (normal cases x{args.repeat}):")
        print(f"  grpo-reward  {ours_rate:8.1f} items/s  ({os.cpu_count()} worker processes)")
        print(f"  Math-Verify  {theirs_rate:8.1f} items/s  (single-threaded)")
        print(f"  ratio        {ours_rate / theirs_rate:8.1f}x\n")
        print("adversarial latency (grpo-reward, default 1 s limit):")
        for name, (seconds, reason) in latencies.items():
            print(f"  {name:26} {seconds:6.3f} s  {reason}")
        print(f"  worst: {max(seconds for seconds, _ in latencies.values()):.3f} s")
    if args.record:
        report.save(sys.argv)


if __name__ == "__main__":
    main()
