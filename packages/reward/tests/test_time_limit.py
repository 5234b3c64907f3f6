"""The hard time limit: adversarial answers cost at most their budget (1 s of worker CPU, so under load
more wall-clock time, never more than the backstop), from any thread or event loop, and a worker that is
killed (by the limit or from outside) is replaced."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import pytest
from grpo_reward import Verifier, verify
from grpo_reward.pool import wall_backstop_s

ADVERSARIAL = {
    "power_tower": r"\boxed{10^{10^{10^{10}}}}",
    "huge_factorial": r"\boxed{(10^{100})!}",
    "deep_braces": r"\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}",
    "deep_parens": r"\boxed{" + "(" * 1_000 + "1" + ")" * 1_000 + "}",
    "two_megabytes": "x" * 2_000_000 + r"\boxed{5}",
    "huge_sum": r"\boxed{\sum_{k=1}^{10^{10}} k^k}",
    "hard_integral": r"\boxed{\int_0^1 e^{x^{x^x}} \sin(x^{x}) dx}",
    "huge_binomial": r"\boxed{\binom{10^{100}}{10^{50}}}",
    "many_pm": r"\boxed{" + r"1 \pm " * 50 + "1}",
}
BUDGET_S = wall_backstop_s(1.0)  # 1 s of CPU takes longer on a loaded machine, never past the backstop


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_answer_is_refused_within_budget(name: str, verifier: Verifier) -> None:
    verdict = verifier.verify(ADVERSARIAL[name], "5")
    assert verdict.correct is False
    # the CPU-second limit or a size check ended it, never the wall-clock backstop (BUDGET_S)
    assert verdict.reason.startswith(("timeout after 1 s CPU", "too large")), verdict.reason
    assert verdict.timed_out is verdict.reason.startswith("timeout")


def test_a_timeout_kills_and_replaces_the_worker(verifier: Verifier) -> None:
    before = set(verifier.worker_pids())
    verdict = verifier.verify(ADVERSARIAL["hard_integral"], "5", timeout_s=0.3)
    assert verdict.reason.startswith("timeout after 0.3 s")
    assert verdict.extracted is not None  # the timeout verdict still reports what was found
    assert verifier.wait_ready(60)
    assert set(verifier.worker_pids()) != before
    assert verifier.verify(r"\boxed{x^2+2x+1}", "(x+1)^2").correct


def test_a_worker_killed_from_outside_is_replaced(verifier: Verifier) -> None:
    assert verifier.wait_ready(60)
    victim = verifier.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while victim in verifier.worker_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert victim not in verifier.worker_pids()
    assert verifier.wait_ready(60)
    results = verifier.verify_many([(r"\boxed{\sqrt{8}}", r"2\sqrt2")] * 4)
    assert all(result.correct for result in results)


def test_time_limit_holds_in_worker_threads(verifier: Verifier) -> None:
    outcomes: list[tuple[bool, str]] = []

    def run() -> None:
        verdict = verifier.verify(ADVERSARIAL["hard_integral"], "5", timeout_s=0.5)
        outcomes.append((verdict.correct, verdict.reason))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10 * BUDGET_S)  # a deadline only a hang reaches
    assert [correct for correct, _ in outcomes] == [False, False]
    assert all(reason.startswith("timeout after 0.5 s CPU") for _, reason in outcomes), outcomes


def test_asyncio_batch_keeps_the_event_loop_free(verifier: Verifier) -> None:
    async def main() -> tuple[list[bool], int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        items = [(ADVERSARIAL["hard_integral"], "5"), (r"\boxed{0.5}", r"\frac12")]
        verdicts = await verifier.averify_many(items, timeout_s=0.5)
        task.cancel()
        return [verdict.correct for verdict in verdicts], ticks

    correct, ticks = asyncio.run(main())
    assert correct == [False, True]
    assert ticks >= 10  # the loop kept running while a worker spent its 0.5 s budget


def test_verify_never_raises_and_reports_unusable_references() -> None:
    assert verify(r"\boxed{5}", "").reason.startswith("unusable reference")
    assert verify(r"\boxed{5}", r"\frac{1}{").correct is False
    assert verify("\ud800\x00\\boxed{\\x}", "5").correct is False
    assert verify(None, "5").correct is False  # type: ignore[arg-type]
    assert verify(r"\boxed{\frac{\sqrt{3}}{2}}", r"\frac{\sqrt3}{2}").correct
    assert verify(r"\boxed{5}", "5", timeout_s=-1).correct is False
