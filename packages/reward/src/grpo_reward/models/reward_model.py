"""Task `reward_model`: a Hugging Face sequence classifier, in a process of its own, scores whole batches.

The model runs in a child process (spawned, so it shares nothing with the service but a pipe): a
hostile or huge input can cost that process, never the service. The service sends every item of a
request that names the model in one message and waits at most `batch_timeout_s` (wall clock) for the
answer; past it, or when the process dies (the kernel's OOM killer, a crash), the process is killed
and started again and the batch's items come back `timed_out` with the reason. Inside the process,
inputs are cut to the model's context with a `truncated` flag and out-of-memory is answered per item
(`grpo_reward.models.scoring`).

Each verdict's reward is the model's logit; its sub-scores are `truncated` (1 when the input was cut)
and `latency_s` (the batch's wall time), reported as `<name>/truncated` and `<name>/latency_s` when the
model is a component.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grpo_reward.models.config import RewardModelConfig
from grpo_reward.models.model_process import AUTHKEY_ENV
from grpo_reward.tasks.batched import BatchTask
from grpo_reward.verdict import Verdict, timed_out

if TYPE_CHECKING:
    from grpo_reward.verifier import Item

logger = logging.getLogger(__name__)


class ModelStartError(RuntimeError):
    """The reward model could not be loaded; the message says which and why."""


def _accept(listener: Listener, process: subprocess.Popen[bytes], timeout_s: float) -> Connection | None:
    """The child's connection, or None when it exits (or takes `timeout_s`) before connecting."""
    accepted: list[Connection] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while thread.is_alive() and process.poll() is None and time.monotonic() < deadline:
        thread.join(0.05)
    if accepted:
        return accepted[0]
    with contextlib.suppress(OSError):  # unblock accept(): the listener closes with the caller's block
        Client(listener.address, family="AF_UNIX", authkey=None)
    return None


class RewardModel(BatchTask):
    """The service's handle on one reward-model process (see the module docstring)."""

    def __init__(self, config: RewardModelConfig) -> None:
        self.name = config.name
        self.config = config
        self.parameters = 0
        self._lock = threading.Lock()  # one batch at a time: the process is serial
        self._process: Any = None
        self._connection: Connection | None = None
        self.restarts = 0
        self._start()

    def _start(self) -> None:
        """Start `python -m grpo_reward.models.model_process` and wait for it to load the model.

        A fresh interpreter (not a fork of the service, not multiprocessing's spawn, which re-runs the
        caller's main module) connected back over a private Unix socket with a one-time key.
        """
        authkey = secrets.token_bytes(32)
        with tempfile.TemporaryDirectory(prefix="grpo-rm-") as folder:
            address = str(Path(folder) / "socket")
            with Listener(address, family="AF_UNIX", authkey=authkey) as listener:
                process = subprocess.Popen(
                    [sys.executable, "-m", "grpo_reward.models.model_process", address],
                    stdin=subprocess.PIPE,
                    env={**os.environ, AUTHKEY_ENV: authkey.hex()},
                    start_new_session=True,
                )
                assert process.stdin is not None
                process.stdin.write(self.config.model_dump_json().encode())
                process.stdin.close()
                parent = _accept(listener, process, self.config.start_timeout_s)
        if parent is None or not parent.poll(self.config.start_timeout_s):
            process.kill()
            process.wait()
            raise ModelStartError(
                f"reward model {self.name!r} ({self.config.path}) did not load within "
                f"{self.config.start_timeout_s:g} s (or its process exited with code {process.poll()})"
            )
        try:
            status, detail = parent.recv()
        except (EOFError, OSError):
            status, detail = "failed", f"the process exited with code {process.wait()}"
        if status != "ready":
            process.wait(5)
            raise ModelStartError(f"reward model {self.name!r} ({self.config.path}) cannot be used: {detail}")
        self.parameters = int(detail)
        self._process, self._connection = process, parent
        logger.info("reward model %r: %s, %d parameters", self.name, self.config.path, self.parameters)

    def _restart(self) -> None:
        self.restarts += 1
        self._kill()
        try:
            self._start()
        except ModelStartError:
            logger.exception("reward model %r could not be restarted", self.name)

    def _kill(self) -> None:
        if self._process is not None:
            with contextlib.suppress(Exception):
                self._process.kill()
                self._process.wait(5)
        if self._connection is not None:
            self._connection.close()
        self._process = self._connection = None

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._connection.send(None)
                if self._process is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self._process.wait(5)
            self._kill()

    def score_blocking(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float | None, bool, str]] | str:
        """The process's answer for `pairs`, or the reason there is none (it was restarted)."""
        with self._lock:
            connection = self._connection
            if connection is None:
                self._restart()
                connection = self._connection
                if connection is None:
                    return "the model process is down and could not be restarted"
            try:
                connection.send(list(pairs))
                if connection.poll(self.config.batch_timeout_s):
                    return connection.recv()
                problem = f"no answer within the batch limit of {self.config.batch_timeout_s:g} s"
            except (EOFError, OSError, ValueError):
                problem = "the model process died while scoring"
            logger.warning("reward model %r: %s; restarting it", self.name, problem)
            self._restart()
            return problem

    async def score_batch(self, items: Sequence[Item]) -> list[Verdict]:
        started = time.monotonic()
        answer = await asyncio.to_thread(self.score_blocking, [(i.prompt, i.completion) for i in items])
        latency = time.monotonic() - started
        logger.info(
            "reward model %r: %d items in %.2f s (%.1f items/s)",
            self.name, len(items), latency, len(items) / max(latency, 1e-9),
        )  # fmt: skip
        if isinstance(answer, str):
            return [timed_out(f"reward model {self.name!r}: {answer}") for _ in items]
        return [self._verdict(reward, truncated, error, latency) for reward, truncated, error in answer]

    def _verdict(self, reward: float | None, truncated: bool, error: str, latency: float) -> Verdict:
        if reward is None:
            return timed_out(f"reward model {self.name!r}: {error}")
        if not math.isfinite(reward):
            return timed_out(f"reward model {self.name!r}: its score is {reward} (not finite)")
        cut = f" (input cut to its last {self.config.max_length} tokens)" if truncated else ""
        return Verdict(
            correct=False,
            reward=reward,
            extracted=None,
            reason=f"reward model {self.name!r} scored {reward:.4g}{cut}",
            components={"truncated": float(truncated), "latency_s": latency},
        )
