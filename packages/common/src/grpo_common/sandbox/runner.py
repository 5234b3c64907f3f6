"""Run one untrusted Python program in the sandbox and collect what it did, within every limit.

`Sandbox.run` starts `launcher.py` (which isolates, limits and execs the program, see its docstring) in its
own process group, feeds stdin, reads stdout/stderr up to the output cap, and SIGKILLs the whole group at
the wall-clock limit or when the output overflows. With isolation, killing the launcher also kills the
PID namespace and everything in it; without it (the operator's explicit unsafe opt-in) only the process
group dies, which a program that calls setsid() can leave.
"""

from __future__ import annotations

import contextlib
import logging
import marshal
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from grpo_common.sandbox.limits import DEFAULT_SANDBOX_LIMITS, SandboxLimits

logger = logging.getLogger(__name__)

LAUNCHER = Path(__file__).with_name("launcher.py")
SANDBOX_UID_BASE = 1_000_000_000
"""As root, a run drops to uid SANDBOX_UID_BASE + the worker's pid: unprivileged, unique to the worker,
so RLIMIT_NPROC counts only this run's processes and no two concurrent runs can signal each other."""
EXIT_SETUP_FAILED = 120  # launcher.EXIT_SETUP_FAILED (the launcher imports nothing from here)
SETUP_FAILED_PREFIX = "sandbox setup failed: "


class SandboxError(RuntimeError):
    """The sandbox itself could not be set up (not the program's fault)."""


@dataclass(frozen=True)
class RunResult:
    """What one run did. `exit_code` is None when a signal ended it (`signal_number`)."""

    exit_code: int | None
    signal_number: int | None
    stdout: str
    stderr: str
    timed_out: bool
    output_exceeded: bool
    wall_s: float

    @property
    def ok(self) -> bool:
        """The program exited 0 within every limit."""
        return self.exit_code == 0 and not self.timed_out and not self.output_exceeded

    def describe(self) -> str:
        """One short phrase for a verdict's reason, e.g. "killed by SIGKILL (a limit)"."""
        if self.timed_out:
            return "wall-clock limit"
        if self.output_exceeded:
            return "output limit"
        if self.signal_number is not None:
            name = signal.Signals(self.signal_number).name
            hint = " (CPU-time or memory limit)" if self.signal_number in (9, 24) else ""
            return f"killed by {name}{hint}"
        return f"exit {self.exit_code}"


def _interpreter() -> tuple[str, str]:
    """The real interpreter binary (not a venv's symlink) and its prefix, which the program runs with."""
    python = os.path.realpath(sys.executable)
    prefix = os.path.realpath(sys.base_prefix)
    if not python.startswith(prefix + os.sep):
        prefix = str(Path(python).parent.parent)
    return python, prefix


class Sandbox:
    """Runs programs under `limits`; `isolate=False` skips the namespaces (unsafe: the network is open)."""

    def __init__(self, limits: SandboxLimits = DEFAULT_SANDBOX_LIMITS, *, isolate: bool = True) -> None:
        self.limits = limits
        self.isolate = isolate

    def run(self, files: Mapping[str, str], argv: Sequence[str], stdin: bytes = b"") -> RunResult:
        """Write `files` (name -> text) into a fresh working directory and run the script `argv[0]` there
        (as `python -I -S -B -X utf8 *argv` would).

        Raises SandboxError only when the sandbox could not be built; everything the program does,
        including crashing or exceeding a limit, is reported in the RunResult.
        """
        for name in files:
            if "/" in name or name in ("", ".", ".."):
                raise ValueError(f"sandbox file names are plain names, got {name!r}")
        python, prefix = _interpreter()
        workdir = "" if self.isolate else tempfile.mkdtemp(prefix="grpo-sandbox-")
        try:
            config = {
                **self.limits.as_launcher_config(),
                "isolate": self.isolate,
                "parent_pid": os.getpid(),
                "uid": SANDBOX_UID_BASE + os.getpid(),
                "python": python,
                "prefix": prefix,
                "files": dict(files),
                "argv": list(argv),
                "workdir": workdir,
            }
            return self._launch(config, stdin)
        finally:
            if workdir:
                shutil.rmtree(workdir, ignore_errors=True)

    def _launch(self, config: dict[str, object], stdin: bytes) -> RunResult:
        python = str(config["python"])
        config_read, config_write = os.pipe()
        started = time.monotonic()
        try:
            process = subprocess.Popen(
                [python, "-I", "-S", "-B", "-X", "utf8", str(LAUNCHER), str(config_read)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=[config_read],
                env={},
                cwd="/",
                start_new_session=True,  # its own process group: one killpg ends the run
            )
        finally:
            os.close(config_read)
        try:
            with os.fdopen(config_write, "wb") as stream, contextlib.suppress(BrokenPipeError):
                stream.write(marshal.dumps(config))
            stdout, stderr, timed_out, exceeded = self._communicate(process, stdin, started)
        finally:
            _kill_group(process)
            process.wait()
            _await_empty_group(process.pid)
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
        wall_s = time.monotonic() - started
        code = process.returncode
        error_text = stderr.decode("utf-8", "replace")
        if code == EXIT_SETUP_FAILED and error_text.startswith(SETUP_FAILED_PREFIX):
            raise SandboxError(error_text.strip())
        return RunResult(
            exit_code=code if code >= 0 else None,
            signal_number=-code if code < 0 else None,
            stdout=stdout.decode("utf-8", "replace"),
            stderr=error_text,
            timed_out=timed_out,
            output_exceeded=exceeded,
            wall_s=wall_s,
        )

    def _communicate(
        self, process: subprocess.Popen[bytes], stdin: bytes, started: float
    ) -> tuple[bytes, bytes, bool, bool]:
        """Feed stdin and read both outputs until EOF, the deadline, or the output cap (which kill)."""
        assert process.stdin and process.stdout and process.stderr
        deadline = started + self.limits.wall_s
        cap = self.limits.output_bytes
        chunks: dict[int, list[bytes]] = {process.stdout.fileno(): [], process.stderr.fileno(): []}
        sizes = dict.fromkeys(chunks, 0)
        pending = memoryview(stdin)
        stdin_fd = process.stdin.fileno()
        with selectors.DefaultSelector() as selector:
            for stream in (process.stdout, process.stderr):
                os.set_blocking(stream.fileno(), False)
                selector.register(stream.fileno(), selectors.EVENT_READ)
            if pending:
                os.set_blocking(stdin_fd, False)
                selector.register(stdin_fd, selectors.EVENT_WRITE)
            else:
                process.stdin.close()
            while any(fd in selector.get_map() for fd in chunks):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return (*_joined(chunks, process), True, False)
                if process.poll() is not None:
                    _kill_group(process)  # stragglers that kept the pipes open (unisolated runs)
                for key, _ in selector.select(min(remaining, 0.5)):
                    if key.fd == stdin_fd:
                        try:
                            pending = pending[os.write(key.fd, pending[:65536]) :]
                        except BrokenPipeError:
                            pending = memoryview(b"")
                        if not pending:
                            selector.unregister(key.fd)
                            process.stdin.close()
                        continue
                    data = os.read(key.fd, 65536)
                    if not data:
                        selector.unregister(key.fd)
                        continue
                    chunks[key.fd].append(data)
                    sizes[key.fd] += len(data)
                    if sizes[key.fd] > cap:
                        return (*_joined(chunks, process), False, True)
        return (*_joined(chunks, process), False, False)


def _joined(chunks: dict[int, list[bytes]], process: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    assert process.stdout and process.stderr
    return b"".join(chunks[process.stdout.fileno()]), b"".join(chunks[process.stderr.fileno()])


def sandbox_pids(worker_pid: int | None = None) -> list[int]:
    """Live processes running as the sandbox uid of `worker_pid` (default: this process), read from /proc.

    For monitoring and for tests: after `Sandbox.run` returns, or after its worker is killed, there are none.
    """
    uid = SANDBOX_UID_BASE + (os.getpid() if worker_pid is None else worker_pid)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:  # it exited while we looked
            continue
        uid_line = next((line for line in status.splitlines() if line.startswith("Uid:")), "Uid: -1")
        if int(uid_line.split()[1]) == uid:
            found.append(int(entry.name))
    return found


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _await_empty_group(pgid: int, timeout_s: float = 5.0) -> None:
    """Wait until every process of the run's group is gone, so the next run under the same uid does not
    find this one's dying processes still counted against its RLIMIT_NPROC."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.002)
    logger.warning("sandbox process group %d still alive %.0f s after SIGKILL", pgid, timeout_s)
