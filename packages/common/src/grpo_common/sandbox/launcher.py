"""The sandbox's first process: isolate, limit, drop privileges, then exec the untrusted program.

Run as a script (`python -I -S -B -X utf8 launcher.py CONFIG_FD`), never imported by the service: it uses
only the standard library so that it starts in milliseconds. It reads its config (a marshalled dict)
from CONFIG_FD, then:

1. asks for SIGKILL when its parent (e.g. a reward worker) dies, so a killed worker leaves nothing behind;
2. with `isolate`, unshares new mount, network, PID, IPC and UTS namespaces (plus a user namespace when it
   is not root) and forks: the child is PID 1 of the new PID namespace, so when it dies the kernel kills
   every process the program started, wherever it went (setsid cannot escape a PID namespace);
3. in that child: makes every existing mount read-only, puts a fresh size-limited tmpfs on /tmp holding the
   throwaway working directory, mounts a /proc that shows only the sandbox's processes, and (as root) keeps
   the interpreter reachable for an unprivileged uid even if it lives under a private home directory;
4. sets the rlimits, drops to the unprivileged `uid` (root only: root ignores RLIMIT_NPROC), re-arms the
   parent-death signal (a uid change clears it), empties the environment and runs the program's entry
   script as __main__ in this same interpreter (no second start-up).

The parent enforces the wall clock and output caps by SIGKILLing this process (see `runner.py`).
"""

from __future__ import annotations

import atexit
import ctypes
import marshal
import os
import resource
import signal
import stat
import sys

PR_SET_PDEATHSIG = 1
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 32, 4096, 8192, 16384, 1 << 18
SYS_MOUNT_SETATTR = 442  # x86_64 and aarch64 share the new-syscall numbers
AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = -100, 0x8000, 1
EXIT_SETUP_FAILED = 120

_libc = ctypes.CDLL(None, use_errno=True)


class _MountAttr(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in ("attr_set", "attr_clr", "propagation", "userns_fd")]


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def encode(text: str | None) -> bytes | None:
        return None if text is None else text.encode()

    result = _libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data))
    _check(result, f"mount {target}")


def _die_with_parent() -> None:
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


def _write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def _enter_namespaces() -> None:
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    uid, gid = os.geteuid(), os.getegid()
    if uid != 0:
        flags |= CLONE_NEWUSER
    _check(_libc.unshare(flags), "unshare(mount, net, pid, ipc, uts namespaces)")
    if uid != 0:  # ns root maps to our own uid; it holds no capability outside the namespace
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")


def _private_ancestor(path: str) -> str | None:
    """The top-most directory above `path` that others cannot traverse (e.g. /root), if there is one."""
    current = "/"
    for part in path.strip("/").split("/"):
        current = os.path.join(current, part)
        if os.path.isdir(current) and not os.stat(current).st_mode & stat.S_IXOTH:
            return current
    return None


def _expose_interpreter(prefix: str) -> None:
    """As root: cover a private ancestor of the interpreter with an empty tmpfs, then bring back only the
    interpreter's own prefix (read-only) at the same path, so an unprivileged uid can run it and sees
    nothing else of that directory."""
    hidden = _private_ancestor(prefix)
    if hidden is None:
        return
    staging = "/tmp/.grpo-prefix"
    os.mkdir(staging)
    _mount(prefix, staging, None, MS_BIND | MS_REC)
    _mount("tmpfs", hidden, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    os.makedirs(prefix, mode=0o755, exist_ok=True)
    _mount(staging, prefix, None, MS_MOVE)
    _mount(None, prefix, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    _mount(None, hidden, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.rmdir(staging)


def _build_filesystem(config: dict) -> str:
    """The sandbox's view of the files: everything read-only but a fresh tmpfs /tmp; returns the workdir."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    attr = _MountAttr(attr_set=MOUNT_ATTR_RDONLY)
    result = _libc.syscall(
        SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE, ctypes.byref(attr), ctypes.sizeof(attr)
    )
    _check(result, "mount_setattr(/, read-only, recursive)")
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={config['scratch_bytes']},mode=1777")
    if os.geteuid() == 0:
        _expose_interpreter(config["prefix"])
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    workdir = "/tmp/work"
    os.mkdir(workdir, 0o700)
    return workdir


def _set_limits(config: dict) -> None:
    limits = {
        resource.RLIMIT_CPU: config["cpu_s"],
        resource.RLIMIT_AS: config["memory_bytes"],
        resource.RLIMIT_FSIZE: config["file_size_bytes"],
        resource.RLIMIT_NPROC: config["max_processes"],
        resource.RLIMIT_NOFILE: config["open_files"],
        resource.RLIMIT_CORE: 0,
    }
    for which, value in limits.items():
        resource.setrlimit(which, (value, value))


def _become_program(config: dict, workdir: str) -> None:
    """Write the program's files, limit, and drop privileges (the last step before the program runs)."""
    root = os.geteuid() == 0
    uid = config["uid"] if root else os.geteuid()
    for name, text in config["files"].items():
        path = os.path.join(workdir, name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        if root:
            os.chown(path, uid, uid)
    if root:
        os.chown(workdir, uid, uid)
    os.chdir(workdir)
    _set_limits(config)
    if root:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    _die_with_parent()  # a credential change cleared it
    os.environ.clear()


def _run_program(argv: list) -> None:
    """Run the entry script as __main__ in this (already unprivileged, limited) interpreter, a fork of the
    launcher, so the program pays for no second interpreter start-up; exit as `python script` would
    (waiting for its threads, running its atexit handlers) but skip the interpreter's slow finalisation."""
    sys.argv = list(argv)
    status = 0
    try:
        with open(argv[0], encoding="utf-8") as source:
            code = compile(source.read(), argv[0], "exec")
        exec(code, {"__name__": "__main__", "__file__": argv[0], "__builtins__": __builtins__})
    except SystemExit as stop:
        status = _exit_status(stop.code)
    except BaseException:
        import traceback

        traceback.print_exc()
        status = 1
    try:
        if "threading" in sys.modules:
            sys.modules["threading"]._shutdown()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        status = status or 1
    os._exit(status)


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _relay_exit(pid: int) -> None:
    """Wait for the namespace's PID 1 and exit the way it did (same code, or killed by the same signal)."""
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        if number not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
    os._exit(os.waitstatus_to_exitcode(status))


def main() -> None:
    with os.fdopen(int(sys.argv[1]), "rb") as stream:
        config = marshal.load(stream)  # written by the trusted parent; marshal needs no import
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _die_with_parent()
    if os.getppid() != config["parent_pid"]:  # the worker died before we armed the signal
        os._exit(EXIT_SETUP_FAILED)
    try:
        if config["isolate"]:
            _enter_namespaces()
            pid = os.fork()
            if pid:
                _relay_exit(pid)
            _die_with_parent()  # now PID 1 of the new namespace: dies with this launcher
            workdir = _build_filesystem(config)
        else:
            workdir = config["workdir"]
        _become_program(config, workdir)
    except BaseException as error:
        print(f"sandbox setup failed: {error}", file=sys.stderr, flush=True)
        os._exit(EXIT_SETUP_FAILED)
    _run_program(config["argv"])


if __name__ == "__main__":
    main()
