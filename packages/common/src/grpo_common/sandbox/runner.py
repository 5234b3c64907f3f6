"""Run one untrusted Python program in the sandbox and collect what it did, within every limit.

`Sandbox.run` waits for one of the service's sandbox slots (`slots.py`, where the service installed them),
starts `launcher.py` (which isolates, limits and execs the program, see its docstring) in its own process
group, feeds stdin, reads stdout/stderr up to the output cap, and SIGKILLs the whole group at the
wall-clock backstop or when the output overflows. The CPU-time limit is the kernel's (RLIMIT_CPU);
`RunResult.cpu_s` is what the run used, so a caller tells a CPU-limit kill from a wall-clock one. With
isolation, killing the launcher also kills the PID namespace and everything in it; without it (the
operator's explicit unsafe opt-in) only the process group dies, which a program that calls setsid() can
leave.
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
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from grpo_common.sandbox.limits import DEFAULT_SANDBOX_LIMITS, SandboxLimits
from grpo_common.sandbox.slots import service_slots

logger = logging.getLogger(__name__)

LAUNCHER = Path(__file__).with_name("launcher.py")
SANDBOX_UID_BASE = 1_000_000_000
"""As root, a run drops to uid SANDBOX_UID_BASE + the calling thread's kernel id (the worker's pid on its
main thread): unprivileged and unique to the thread, which runs one program at a time, so RLIMIT_NPROC
counts only this run's processes (a fork bomb in one rollout episode cannot starve another's) and no two
concurrent runs can signal each other."""
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
    cpu_s: float = 0.0
    cpu_limit_s: float = 0.0
    cpu_exceeded: bool = False

    @property
    def cpu_limited(self) -> bool:
        """Killed for spending its CPU-time limit: all its processes together (`cpu_exceeded`), or one
        process past RLIMIT_CPU (SIGKILL, or SIGXCPU past the soft limit)."""
        return self.cpu_exceeded or (
            self.signal_number in (signal.SIGKILL, signal.SIGXCPU)
            and not self.timed_out
            and self.cpu_s >= 0.9 * self.cpu_limit_s  # rusage and the rlimit check tick apart
        )

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
        if self.cpu_limited:
            return f"CPU-time limit ({self.cpu_limit_s:g} s)"
        if self.signal_number is not None:
            return f"killed by {signal.Signals(self.signal_number).name}"
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
        (as `python -I -S -B -X utf8 *argv` would), once one of the service's sandbox slots is free.

        Raises SandboxError only when the sandbox could not be built; everything the program does,
        including crashing or exceeding a limit, is reported in the RunResult.
        """
        for name in files:
            if "/" in name or name in ("", ".", ".."):
                raise ValueError(f"sandbox file names are plain names, got {name!r}")
        slots = service_slots()
        with slots.hold() if slots is not None else contextlib.nullcontext():
            return self._run(files, argv, stdin)

    def _run(self, files: Mapping[str, str], argv: Sequence[str], stdin: bytes) -> RunResult:
        python, prefix = _interpreter()
        workdir = "" if self.isolate else tempfile.mkdtemp(prefix="grpo-sandbox-")
        try:
            config = {
                **self.limits.as_launcher_config(),
                "isolate": self.isolate,
                "parent_pid": os.getpid(),
                "uid": SANDBOX_UID_BASE + threading.get_native_id(),
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
            stdout, stderr, timed_out, exceeded, cpu_exceeded = self._communicate(process, stdin, started)
        finally:
            _kill_group(process)
            cpu_s = _reap(process)
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
            cpu_s=cpu_s,
            cpu_limit_s=self.limits.cpu_s,
            cpu_exceeded=cpu_exceeded,
        )

    def _communicate(
        self, process: subprocess.Popen[bytes], stdin: bytes, started: float
    ) -> tuple[bytes, bytes, bool, bool, bool]:
        """Feed stdin and read both outputs until EOF, the deadline, the output cap or the run's CPU
        budget (which kill); returns (stdout, stderr, timed_out, output_exceeded, cpu_exceeded)."""
        assert process.stdin and process.stdout and process.stderr
        deadline = started + self.limits.wall_s
        budget = _CpuBudget(process.pid, self.limits.cpu_s, started)
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
                    return (*_joined(chunks, process), True, False, False)
                if budget.spent():
                    return (*_joined(chunks, process), False, False, True)
                if _exited(process):
                    _kill_group(process)  # stragglers that kept the pipes open (unisolated runs)
                for key, _ in selector.select(min(remaining, budget.next_check_s())):
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
                        return (*_joined(chunks, process), False, True, False)
        return (*_joined(chunks, process), False, False, False)


def _joined(chunks: dict[int, list[bytes]], process: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    assert process.stdout and process.stderr
    return b"".join(chunks[process.stdout.fileno()]), b"".join(chunks[process.stderr.fileno()])


def _uids_of_processes() -> dict[int, int]:
    """pid -> real uid of every live process, from /proc/PID/status (a uid change makes a process
    non-dumpable, which leaves its /proc directory owned by root, so its owner says nothing)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:  # it exited while we looked
            continue
        uid_line = next((line for line in status.splitlines() if line.startswith("Uid:")), "Uid: -1")
        found[int(entry.name)] = int(uid_line.split()[1])
    return found


def sandbox_pids(worker_pid: int | None = None) -> list[int]:
    """Live processes running as the sandbox uid of the thread `worker_pid` (default: the calling thread; a
    process's pid is its main thread's id), read from /proc.

    For monitoring and for tests: after `Sandbox.run` returns, or after its worker is killed, there are none.
    """
    uid = SANDBOX_UID_BASE + (threading.get_native_id() if worker_pid is None else worker_pid)
    return [pid for pid, owner in _uids_of_processes().items() if owner == uid]


def live_sandbox_owners() -> set[int]:
    """The owners (thread or worker ids: uid - SANDBOX_UID_BASE) of every live sandboxed process on this
    machine, read from /proc: one entry per sandbox running now. For monitoring and tests."""
    return {uid - SANDBOX_UID_BASE for uid in _uids_of_processes().values() if uid >= SANDBOX_UID_BASE}


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_CPU_CHECK_S = 0.25


class _CpuBudget:
    """The CPU time of a run's whole process tree against its limit, without cgroups.

    RLIMIT_CPU caps each process; a program that forks (a fork bomb) could spend `max_processes` times
    that. So, once the run could have spent its budget at all (wall time x cores >= cpu_s: most runs end
    before), the parent sums user + system time over the launcher's descendants (a process's parent chain
    stays inside the sandbox's PID namespace, whose init is the launcher's child) every 0.25 s.
    """

    def __init__(self, launcher_pid: int, cpu_s: float, started: float) -> None:
        self.launcher_pid = launcher_pid
        self.cpu_s = cpu_s
        self.first_check = started + cpu_s / max(1, os.cpu_count() or 1)

    def next_check_s(self) -> float:
        return max(0.01, min(_CPU_CHECK_S, self.first_check - time.monotonic()))

    def spent(self) -> bool:
        if time.monotonic() < self.first_check:
            return False
        return _tree_cpu_s(self.launcher_pid) >= self.cpu_s


def _tree_cpu_s(root: int) -> float:
    """User + system CPU seconds of `root` and its live descendants (with the children they reaped)."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:  # it exited while we looked
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        ticks[pid] = sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += ticks.get(pid, 0)
        stack.extend(children.get(pid, ()))
    return total / _CLOCK_TICKS


def _exited(process: subprocess.Popen[bytes]) -> bool:
    """Whether the launcher has exited, leaving it unreaped (so `_reap` still gets its CPU time)."""
    flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
    return os.waitid(os.P_PID, process.pid, flags) is not None


def _reap(process: subprocess.Popen[bytes]) -> float:
    """Wait for the launcher and return the CPU seconds it and the children it reaped (the program) used."""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


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
