"""Helpers for reward tests that run `grpo-reward serve` as a real process on loopback."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

PLUGINS_DIR = Path(__file__).parent / "plugins"


@contextlib.contextmanager
def reward_server(args: list[str], env: Mapping[str, str] | None = None) -> Iterator[str]:
    """`grpo-reward serve --port 0 ARGS` with ENV added; yields its address, then stops it with SIGTERM."""
    command = [sys.executable, "-m", "grpo_reward.cli", "serve", "--port", "0", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    try:
        while not any("serving on" in line for line in lines):
            assert process.poll() is None, "grpo-reward serve exited before serving"
            assert time.monotonic() < deadline, "grpo-reward serve did not report its port"
            time.sleep(0.05)
        yield next(line for line in lines if "serving on" in line).split("serving on ")[1].strip()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
