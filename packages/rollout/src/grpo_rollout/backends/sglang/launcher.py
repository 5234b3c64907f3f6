"""Start an SGLang server as a child process with the documented flags and wait for /health.

Used when no `--sglang-url` is given: `python -m sglang.launch_server --model-path M --host H
--port P --tp-size N --dp-size D --mem-fraction-static F --skip-server-warmup --weight-version 0`,
plus `--enable-lora --max-lora-rank R --lora-target-modules M ...` when asked to serve LoRA adapters.
The child's output goes to a log file; it is terminated (then killed) when the service stops.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from grpo_rollout.backends.sglang.config import SGLangConfig
from grpo_rollout.backends.sglang.http import SGLangServer

logger = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class LaunchSettings:
    """One launch: the model, the `[sglang]` section (its launch options are read from it, never
    copied) and what only this process decides: the host, a seed, the log file, the interpreter."""

    model_path: str
    sglang: SGLangConfig
    host: str = "127.0.0.1"
    random_seed: int | None = None
    log_file: Path | None = None
    python: str = sys.executable

    @classmethod
    def of(cls, model_path: str, settings: SGLangConfig) -> LaunchSettings:
        """The launch of the rollout config's `sglang` section (used when it gives no url)."""
        return cls(model_path=model_path, sglang=settings)


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
        str(settings.sglang.tp_size),
        "--dp-size",
        str(settings.sglang.dp_size),
        "--mem-fraction-static",
        str(settings.sglang.mem_fraction_static),
        "--skip-server-warmup",
        "--weight-version",
        "0",
    ]
    if settings.random_seed is not None:
        command += ["--random-seed", str(settings.random_seed)]
    sglang = settings.sglang
    if sglang.lora_max_rank is not None:
        command += ["--enable-lora", "--max-lora-rank", str(sglang.lora_max_rank)]
        command += ["--lora-target-modules", *sglang.lora_target_modules]
    return command + sglang.extra_args


class SGLangProcess:
    """A child SGLang server; `await start()` returns its URL once /health answers 200."""

    def __init__(self, settings: LaunchSettings) -> None:
        self.settings = settings
        self.port = settings.sglang.launch_port or free_port(settings.host)
        self.url = f"http://{settings.host}:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    async def start(self, timeout_s: float) -> str:
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
