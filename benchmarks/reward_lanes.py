"""Head-of-line blocking in the reward service: how long a math item waits behind a burst of code items.

    uv run python benchmarks/reward_lanes.py [--burst 32] [--rounds 3] [--workers 2] [--record]

Starts a real `grpo-reward serve` on loopback twice: once with every task in one FIFO lane (the operator
setting `task_lanes = {"code": "default"}`, which is how the service behaved before lanes), once with the
default lanes (`code` has its own workers). Each round sends BURST code items as concurrent Score calls
(each program runs three assert tests with a little arithmetic, in the sandbox), waits until one comes back
(so the burst is queued), then sends one math item that needs a worker (sympy) and times it. Printed per
setting, medians over the rounds: the math item's latency, how many code items had come back when it did,
and how long the burst took to drain. `--record` writes the table into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
from grpo.v1 import reward_pb2, reward_pb2_grpc
from results_file import provenance, record  # benchmarks/results_file.py

PROGRAM = "```python\ndef work(n):\n    return sum(i * i for i in range(n))\n```"
TESTS = [f"assert work({n}) == {sum(i * i for i in range(n))}" for n in (100_000, 200_000, 300_000)]
MATH = reward_pb2.ScoreItem(id="math", completion=r"so \boxed{(x+1)^2}", reference="x^2+2x+1")
SPEC = reward_pb2.RewardSpec(timeout_s=10)
SETTINGS = {"one FIFO lane (before)": {"code": "default"}, "a lane per task class (after)": {}}


@contextmanager
def reward_service(workers: int, task_lanes: dict[str, str]) -> Iterator[str]:
    """`grpo-reward serve` with `task_lanes`; yields its address, stops it on exit."""
    environment = {**os.environ, "GRPO_REWARD_TASK_LANES": json.dumps(task_lanes)}
    command = [sys.executable, "-m", "grpo_reward.cli", "serve", "--port", "0", "--workers", str(workers)]
    process = subprocess.Popen(
        [*command, "--log-level", "WARNING"], stdout=subprocess.PIPE, text=True, env=environment
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "serving on" not in line:
            raise RuntimeError(f"grpo-reward serve did not start: {line!r}")
        yield line.split("serving on ")[1].strip()
    finally:
        process.terminate()
        process.wait(timeout=60)


def one_round(stub: reward_pb2_grpc.RewardServiceStub, burst: int) -> tuple[float, int, float]:
    """(math latency s, code items back when it came back, burst drain s) for one burst."""
    fields = json.dumps({"tests": TESTS, "time_limit_s": 5})
    started = time.perf_counter()
    calls = []
    for number in range(burst):
        item = reward_pb2.ScoreItem(
            id=f"code{number}", task="code", completion=PROGRAM, reference="-", fields_json=fields
        )
        calls.append(stub.Score.future(reward_pb2.ScoreRequest(items=[item], spec=SPEC), timeout=600))
    one_back = threading.Event()
    for call in calls:
        call.add_done_callback(lambda _: one_back.set())
    one_back.wait(600)
    sent = time.perf_counter()
    result = stub.Score(reward_pb2.ScoreRequest(items=[MATH], spec=SPEC), timeout=600).results[0]
    latency = time.perf_counter() - sent
    back = sum(call.done() for call in calls)
    rewards = [call.result().results[0].reward for call in calls]
    drained = time.perf_counter() - started
    if not result.correct or rewards != [1.0] * burst:
        raise RuntimeError(f"wrong grades: math {result.reason!r}, code rewards {sorted(set(rewards))}")
    return latency, back, drained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--burst", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="workers per lane")
    parser.add_argument("--record", action="store_true", help="write the table into benchmarks/RESULTS.md")
    args = parser.parse_args()
    load_before = os.getloadavg()
    rows = []
    for name, task_lanes in SETTINGS.items():
        with reward_service(args.workers, task_lanes) as address, grpc.insecure_channel(address) as channel:
            stub = reward_pb2_grpc.RewardServiceStub(channel)
            stub.Score(reward_pb2.ScoreRequest(items=[MATH], spec=SPEC), timeout=600)  # workers started
            rounds = [one_round(stub, args.burst) for _ in range(args.rounds)]
        latency = statistics.median(r[0] for r in rounds)
        back = statistics.median(r[1] for r in rounds)
        drained = statistics.median(r[2] for r in rounds)
        rows.append(f"| {name} | {latency * 1000:.0f} ms | {back:g} of {args.burst} | {drained:.1f} s |")
        print(rows[-1], flush=True)
    load_after = os.getloadavg()
    load = tuple(max(a, b) for a, b in zip(load_before, load_after, strict=True))
    body = (
        f"A math item sent behind {args.burst} concurrent `code` items (3 assert tests each), "
        f"{args.workers} workers per lane, medians over {args.rounds} rounds "
        "(`benchmarks/reward_lanes.py`). Wall-clock figures on a shared machine: the load average is in "
        "the line above; the count of code items back is the load-independent part.\n\n"
        "| setting | math item latency | code items back by then | burst drained in |\n"
        "|---|---|---|---|\n" + "\n".join(rows)
    )
    print(provenance(load))
    if args.record:
        print(f"recorded in {record('Reward service: head-of-line blocking', body, load_during=load)}")


if __name__ == "__main__":
    main()
