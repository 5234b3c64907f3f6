"""Reward-task plugins for the tests: well-behaved ones, and ones that hang, crash or allocate without bound.

Loaded by a real `grpo-reward serve --plugin hostile_rewards ...` (this directory is on its PYTHONPATH).
The module form registers `slow_correct` by name; the other functions are loaded as module:function.
"""

from __future__ import annotations

import os
import time
from typing import Any

from grpo_reward.tasks import TASKS, TaskScore


def _burn_cpu(seconds: float) -> None:
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass


@TASKS.register("slow_correct")
def slow_correct(completion: str, reference: str, **fields: Any) -> bool:
    """Right when the completion equals the reference, after 0.3 s of CPU (however long that takes)."""
    _burn_cpu(float(fields.get("cpu_s", 0.3)))
    return completion.strip() == reference.strip()


def brevity(completion: str, reference: str, **_: Any) -> TaskScore:
    """1 for an empty completion, falling to 0 at 100 characters."""
    return TaskScore(reward=max(0.0, 1 - len(completion) / 100), components={"characters": len(completion)})


def spin(completion: str, reference: str, **_: Any) -> float:
    while True:
        pass


def sleep(completion: str, reference: str, **_: Any) -> float:
    time.sleep(3600)
    return 1.0


def exit_process(completion: str, reference: str, **_: Any) -> float:
    os._exit(3)


def raise_error(completion: str, reference: str, **_: Any) -> float:
    raise RuntimeError("this plugin is broken")


def allocate(completion: str, reference: str, **_: Any) -> float:
    hoard = []
    while True:
        hoard.append(bytearray(16 << 20))


def not_a_number(completion: str, reference: str, **_: Any) -> float:
    return float("nan")


def echo_fields(completion: str, reference: str, **fields: Any) -> TaskScore:
    """Reward 1 when the row's fields arrived as keyword arguments (reason lists their names)."""
    return TaskScore(reward=1.0 if fields else 0.0, reason=",".join(sorted(fields)))
