"""Start an SGLang server as a child process with the documented flags and wait for /health.

Used when no `--sglang-url` is given: `python -m sglang.launch_server --model-path M --host H
--port P --tp-size N --dp-size D --mem-fraction-static F --skip-server-warmup --weight-version 0`.
The child's output goes to a log file; it is terminated (then killed) when the service stops.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from grpo_rollout.sglang_http import SGLangServer

logger = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class LaunchSettings:
    model_path: str
    host: str = "127.0.0.1"
    port: int = 0  # 0 = pick a free port
    tp_size: int = 1
    dp_size: int = 1
    mem_fraction_static: float = 0.7
    random_seed: int | None = None
    extra_args: list[str] = field(default_factory=list)
    log_file: Path | None = None
    python: str = sys.executable


def launch_command(settings: LaunchSettings, port: int) -> list[str]:
    command = [
        settings.python,
        "-m",
        "sglang.launch_server",
        "--model-path",
        settings.model_path,
        "--host",
        settings.host,
        "--port",
        str(port),
        "--tp-size",
        str(settings.tp_size),
        "--dp-size",
        str(settings.dp_size),
        "--mem-fraction-static",
        str(settings.mem_fraction_static),
        "--skip-server-warmup",
        "--weight-version",
        "0",
    ]
    if settings.random_seed is not None:
        command += ["--random-seed", str(settings.random_seed)]
    return command + settings.extra_args


class SGLangProcess:
    """A child SGLang server; `await start()` returns its URL once /health answers 200."""

    def __init__(self, settings: LaunchSettings) -> None:
        self.settings = settings
        self.port = settings.port or free_port(settings.host)
        self.url = f"http://{settings.host}:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    async def start(self, timeout_s: float = 900.0) -> str:
        command = launch_command(self.settings, self.port)
        log_path = self.settings.log_file or Path(f"sglang-{self.port}.log")
        logger.info("launching SGLang: %s (log: %s)", " ".join(command), log_path)
        with open(log_path, "ab") as log:
            # Own session: SGLang starts scheduler/detokenizer children, stopped with the group.
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(), start_new_session=True
            )
        async with httpx.AsyncClient() as client:
            try:
                await SGLangServer(self.url, client).wait_healthy(timeout_s, still_alive=self.alive)
            except BaseException:
                self.stop()
                raise
        logger.info("SGLang is healthy at %s (pid %d)", self.url, self._process.pid)
        return self.url

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, grace_s: float = 30.0) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        group = os.getpgid(self._process.pid)
        os.killpg(group, signal.SIGTERM)
        try:
            self._process.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(group, signal.SIGKILL)
            self._process.wait()
