"""The process sandbox on its own: each limit and each isolation, with real programs on this kernel."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import grpo_common
import pytest
from grpo_common.sandbox import RunResult, Sandbox, SandboxLimits
from grpo_common.sandbox.probe import PRIVILEGE_PROBE, SETUID_BINARY, probe_isolation
from grpo_common.sandbox.runner import SANDBOX_UID_BASE, live_sandbox_owners, sandbox_pids
from grpo_common.sandbox.slots import SandboxSlotsConfig, service_slots_installed


def _run(source: str, limits: SandboxLimits | None = None, stdin: bytes = b"") -> RunResult:
    sandbox = Sandbox(limits) if limits else Sandbox()
    return sandbox.run({"main.py": textwrap.dedent(source)}, ["main.py"], stdin)


def test_the_probe_finds_full_isolation_on_this_kernel() -> None:
    status = probe_isolation()
    assert status.available, status.reason


def test_a_program_runs_unprivileged_as_pid_1_in_a_throwaway_directory() -> None:
    result = _run(
        "import os, sys; print(os.getuid(), os.getpid(), os.getcwd(), sys.stdin.read())", stdin=b"hi"
    )
    uid, pid, cwd, echoed = result.stdout.split()
    assert result.ok, result.stderr
    assert (int(uid), int(pid), cwd, echoed) == (SANDBOX_UID_BASE + os.getpid(), 1, "/tmp/work", "hi")


def test_the_service_environment_does_not_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRPO_TEST_SECRET", "hunter2-secret")
    result = _run(
        """
        import glob, os
        print(dict(os.environ))
        for path in glob.glob("/proc/*/environ"):
            try:
                print(open(path, "rb").read())
            except OSError as error:
                print(path, error)
        """
    )
    assert result.ok, result.stderr
    assert "hunter2-secret" not in result.stdout and "GRPO_TEST_SECRET" not in result.stdout


def test_no_network_not_even_loopback() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(0.5)
        port = server.getsockname()[1]
        result = _run(
            f"""
            import socket
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=2)
                print("connected")
            except OSError as error:
                print("refused", error.errno)
            """
        )
        with pytest.raises(TimeoutError):
            server.accept()
    assert result.stdout.startswith("refused"), result.stdout


def test_writes_and_deletes_outside_the_directory_fail(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    escape = tmp_path / "escape.txt"
    private = f"grpo-escape-{os.getpid()}"  # ../ of the workdir is the sandbox's own throwaway /tmp
    result = _run(
        f"""
        import os
        open("../{private}", "w").write("stays in the sandbox's tmpfs")
        for action, target in [("write", {str(escape)!r}), ("write", "/var/tmp/grpo-escape"),
                               ("write", "/etc/grpo-escape"), ("delete", {str(victim)!r})]:
            try:
                open(target, "w").write("x") if action == "write" else os.remove(target)
                print(action, target, "SUCCEEDED")
            except OSError as error:
                print(action, target, "failed", error.errno)
        open("inside.txt", "w").write("fine")
        print(open("inside.txt").read())
        """
    )
    assert result.ok, result.stderr
    assert "SUCCEEDED" not in result.stdout and result.stdout.rstrip().endswith("fine")
    assert victim.read_text() == "keep me"
    assert not escape.exists() and not Path("/var/tmp/grpo-escape").exists()
    assert not Path("/tmp", private).exists() and not Path("/etc/grpo-escape").exists()


def test_os_system_runs_unprivileged_and_contained() -> None:
    result = _run("import os; os.system('id -u; touch /etc/grpo-escape; echo status $?')")
    assert result.ok, result.stderr
    assert result.stdout.split()[0] == str(SANDBOX_UID_BASE + os.getpid())
    assert "status 0" not in result.stdout and not Path("/etc/grpo-escape").exists()


def test_a_fork_bomb_is_capped_and_fully_killed() -> None:
    limits = SandboxLimits(wall_s=2.0, max_processes=16)
    result = _run(
        """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """,
        limits,
    )
    # It never exits by itself: a limit ended it. Which one depends on how much CPU the box gives it:
    # idle, the tree spends its CPU budget first; on busy cores, the wall-clock backstop comes first.
    assert not result.ok and (result.timed_out or result.cpu_limited), result
    assert sandbox_pids() == []


def test_a_sleeping_program_hits_the_wall_clock() -> None:
    result = _run("import time; time.sleep(60)", SandboxLimits(wall_s=0.5))
    assert result.timed_out and result.describe() == "wall-clock limit"  # killed, not slept out


def test_a_busy_loop_hits_the_cpu_limit() -> None:
    result = _run("while True: pass", SandboxLimits(cpu_s=1, wall_s=20))
    assert not result.timed_out and result.signal_number == signal.SIGKILL  # the CPU limit, not the wall


def test_a_10_gb_allocation_fails_inside_the_program() -> None:
    result = _run("x = bytearray(10 * 1024**3)")
    assert result.exit_code == 1 and "MemoryError" in result.stderr


def test_file_size_and_output_are_capped() -> None:
    too_big = _run(
        "open('big', 'wb').write(b'x' * (32 * 1024 * 1024))", SandboxLimits(file_size_bytes=1 << 20)
    )
    assert too_big.exit_code == 1 and "File too large" in too_big.stderr
    chatty = _run("while True: print('x' * 1000)", SandboxLimits(output_bytes=100_000))
    assert chatty.output_exceeded and len(chatty.stdout) <= 100_000 + 65536


def test_the_sandbox_dies_with_its_worker() -> None:
    """A worker-like process starts a sandboxed sleeper; SIGKILLing the worker must leave nothing behind."""
    script = "from grpo_common.sandbox import Sandbox, SandboxLimits\n"
    script += "program = {'m.py': 'import os, time\\nos.fork(); time.sleep(60)'}\n"
    script += (
        "Sandbox(SandboxLimits(wall_s=60)).run(program, ['m.py'])\n"  # the kill must be ours, not the wall's
    )
    worker = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 20
    while len(sandbox_pids(worker.pid)) < 2:
        assert time.monotonic() < deadline and worker.poll() is None, "the sandboxed program never started"
        time.sleep(0.05)
    worker.kill()
    worker.wait()
    deadline = time.monotonic() + 5
    while sandbox_pids(worker.pid):
        assert time.monotonic() < deadline, (
            f"sandboxed processes outlived their worker: {sandbox_pids(worker.pid)}"
        )
        time.sleep(0.05)


def test_setuid_binaries_and_the_program_hold_no_privilege() -> None:
    """`su` is setuid root on this host: inside, it runs with the program's uid, no capability at all,
    and no_new_privs (as does the program itself)."""
    result = _run(
        PRIVILEGE_PROBE
        + "\nimport json\n"
        + f"print(json.dumps([privileges(status_of('self')), setuid_run({SETUID_BINARY!r})]))\n"
    )
    assert result.ok, result.stderr
    program, setuid = json.loads(result.stdout)
    assert setuid is not None and "error" not in setuid, setuid  # it ran and was inspected
    for seen in (program, setuid):
        assert seen == {
            "euid": SANDBOX_UID_BASE + os.getpid(),
            "cap_eff": "0" * 16,
            "cap_bnd": "0" * 16,
            "no_new_privs": "1",
        }


def test_the_host_files_are_invisible_and_every_mount_is_nosuid() -> None:
    """The repository, this package's own files, a data file, home and temporary directories: none is
    there; the root holds only /usr (and its links), the interpreter, /etc/ld.so.cache, /dev, /proc, /tmp."""
    data = Path(__file__).resolve().parent / ".sandbox-data.jsonl"
    data.write_text('{"answer": 42}\n')
    host_tmp = Path(tempfile.gettempdir()) / f"grpo-host-tmp-{os.getpid()}"
    host_tmp.write_text("host")
    repository = Path(__file__).resolve().parents[3]
    paths = [str(data), str(repository), str(Path(grpo_common.__file__).resolve()), str(host_tmp)]
    paths += [str(Path.home() / ".cache"), "/home", "/work", "/var", "/run", "/sys", "/etc/passwd"]
    try:
        result = _run(
            f"""
            import json, os
            mounts = [line.split() for line in open("/proc/self/mountinfo")]
            print(json.dumps({{
                "seen": [path for path in {paths!r} if os.path.exists(path)],
                "top": sorted(os.listdir("/")),
                "suid": [m[4] for m in mounts if "nosuid" not in m[5].split(",")],
                "dev": sorted(m[4] for m in mounts if "nodev" not in m[5].split(",")),
            }}))
            """
        )
    finally:
        data.unlink()
        host_tmp.unlink()
    assert result.ok, result.stderr
    report = json.loads(result.stdout)
    assert report["seen"] == [], report["seen"]
    assert set(report["top"]) <= {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "root", "opt"} | {
        "etc",
        "dev",
        "proc",
        "tmp",
    }, report["top"]
    assert report["suid"] == []
    assert report["dev"] == [f"/dev/{name}" for name in sorted(["full", "null", "random", "urandom", "zero"])]


def test_the_service_bound_holds_threads_to_its_slots() -> None:
    """6 threads each run a 0.4 s sleeper under a bound of 2: at most 2 sandboxes are ever seen at once."""
    mine: set[int] = set()
    outputs: list[str] = []

    def sleeper() -> None:
        mine.add(threading.get_native_id())
        outputs.append(_run("import time; time.sleep(0.4); print('done')").stdout)

    with service_slots_installed(SandboxSlotsConfig(max_concurrent=2)):
        threads = [threading.Thread(target=sleeper) for _ in range(6)]
        for thread in threads:
            thread.start()
        most = 0
        while any(thread.is_alive() for thread in threads):
            most = max(most, len(live_sandbox_owners() & mine))
            time.sleep(0.01)
    assert outputs == ["done\n"] * 6
    assert 1 <= most <= 2, most
