"""Starting the reward and rollout services as child processes, exactly as in production.

`grpo train` with no addresses runs every service on this machine, each in its own process that
talks gRPC on a free loopback port: the same binaries and flags a user starts by hand on separate
machines. The children live in their own session (Ctrl-C reaches only the launcher, which stops
them in order) and get SIGTERM from the kernel if the launcher dies, so none is ever orphaned.

CPU threads: the rollout service reports whether it computes on this CPU; each side gets every
core while the phases take turns, a share when they overlap (`cpu_threads.py`).
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from grpo_learner.config import LocalServicesConfig
from grpo_learner.local.cpu_threads import (
    learner_threads,
    phases_take_turns,
    reported_host_cpu_threads,
    rollout_threads,
)

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


class ServiceStartError(RuntimeError):
    """A child service exited or never announced its port; the message holds its log tail."""


def _die_with_parent() -> None:
    """Runs in the child before exec: ask Linux to SIGTERM us when the launcher dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def find_executable(name: str) -> str:
    """The console script `name` from this environment first, else from PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise ServiceStartError(
            f"'{name}' is not installed in this environment; install it (uv sync in the workspace, or "
            f"pip install {name}) or start the service elsewhere and pass its address with --rollout"
        )
    return found


@dataclass
class ServiceProcess:
    name: str
    process: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM (graceful drain), then SIGKILL after `timeout_s`. Returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within %.0f s; killing it", self.name, timeout_s)
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_service(
    name: str,
    argv: list[str],
    state_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ready_timeout_s: float = LocalServicesConfig.model_fields["ready_timeout_s"].default,
    env: dict[str, str] | None = None,
) -> ServiceProcess:
    """Run `argv --host H --port P --port-file F`, wait until it announces its port, return it.

    The child's stdout and stderr go to `state_dir/<name>.log`. `ready_timeout_s` defaults to
    `local_services.ready_timeout_s`'s default, read from the config (it used to restate 120 s of 600).
    """
    return launch_service(name, argv, state_dir, host=host, port=port, env=env).wait_ready(ready_timeout_s)


@dataclass
class LaunchedService:
    """A service process that was started and has not announced its port yet."""

    name: str
    process: subprocess.Popen[bytes]
    host: str
    port_file: Path
    log_path: Path

    def wait_ready(self, timeout_s: float) -> ServiceProcess:
        """Block until the service writes its port file; kill it and raise if it dies or is late."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.port_file.exists():
                bound = int(self.port_file.read_text().strip())
                logger.info("%s is serving on %s:%d (log: %s)", self.name, self.host, bound, self.log_path)
                return ServiceProcess(self.name, self.process, self.host, bound, self.log_path)
            if self.process.poll() is not None:
                raise ServiceStartError(
                    f"{self.name} exited with code {self.process.returncode} before serving; its log "
                    "ends with:\n" + _tail(self.log_path)
                )
            time.sleep(0.1)
        self.stop()
        raise ServiceStartError(
            f"{self.name} did not serve within {timeout_s:.0f} s; log:\n{_tail(self.log_path)}"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def launch_service(
    name: str,
    argv: list[str],
    state_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    env: dict[str, str] | None = None,
) -> LaunchedService:
    """Start `argv --host H --port P --port-file F` and return at once (see `LaunchedService`)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    port_file = state_dir / f"{name}.port"
    port_file.unlink(missing_ok=True)
    log_path = state_dir / f"{name}.log"
    command = [*argv, "--host", host, "--port", str(port), "--port-file", str(port_file)]
    logger.info("starting %s: %s", name, " ".join(command))
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            env={**os.environ, **(env or {})},
        )
    return LaunchedService(name, process, host, port_file, log_path)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def local_services(
    model: str,
    run_dir: Path,
    config: LocalServicesConfig,
    *,
    max_staleness: int,
    while_reward_starts: Callable[[], object] | None = None,
) -> Iterator[list[ServiceProcess]]:
    """A reward service and a rollout service serving `model`, stopped (rollout first) on exit.

    While they run, this process's torch threads are the learner's share of the cores
    (`cpu_threads.py`: all of them when the phases take turns, `max_staleness` 0, else the cores
    the rollout service leaves): at first as if it computed here with the threads it is started
    with, then from what its GetInfo says (`train.torch_threads`, applied later, still wins).
    `while_reward_starts`: work done in this process between launching the reward service and
    waiting for it (the embedded default's warm-up, which writes `model`): the service's start-up
    (imports, worker processes: seconds) overlaps it instead of adding to the run.
    """
    state_dir = run_dir / "services"
    services: list[ServiceProcess] = []
    cores = os.cpu_count() or 1
    serial = phases_take_turns(max_staleness, os.environ)
    asked = rollout_threads(config, cores, serial)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(learner_threads(None, asked, cores, serial) or threads_before)  # until it says
    try:
        reward_argv = [find_executable("grpo-reward"), "serve", "--workers", str(config.reward_workers)]
        reward_argv += config.reward_args
        launched = launch_service("reward", reward_argv, state_dir)
        try:
            if while_reward_starts is not None:
                while_reward_starts()
            reward = launched.wait_ready(config.ready_timeout_s)
        except BaseException:
            launched.stop()
            raise
        services.append(reward)
        rollout_argv = [
            find_executable("grpo-rollout"),
            "serve",
            "--model", model,
            "--generator", config.generator,
            "--reward-address", reward.address,
        ]  # fmt: skip
        # The rollout service's [hf] options: a backend that runs no torch here ignores them.
        rollout_argv += ["--device", config.device]
        if config.dtype:
            rollout_argv += ["--dtype", config.dtype]
        rollout_argv += ["--torch-threads", str(asked), *config.rollout_args]
        rollout = start_service("rollout", rollout_argv, state_dir, ready_timeout_s=config.ready_timeout_s)
        services.append(rollout)
        reported = reported_host_cpu_threads(rollout.address)
        learner = learner_threads(reported, asked, cores, serial)
        torch.set_num_threads(learner or threads_before)
        logger.info(
            "CPU threads (phases %s): the rollout service computes here with %s, the learner takes %s",
            "take turns" if serial else "overlap",
            "(unknown)" if reported is None else reported,
            learner or f"torch's default ({threads_before})",
        )
        yield services
    finally:
        for service in reversed(services):
            service.stop()
        torch.set_num_threads(threads_before)
