"""The sandbox's first process: isolate, limit, drop privileges, then exec the untrusted program.

Run as a script (`python -I -S -B -X utf8 launcher.py CONFIG_FD`), never imported by the service: it uses
only the standard library so that it starts in milliseconds. It reads its config (a marshalled dict)
from CONFIG_FD, then:

1. asks for SIGKILL when its parent (e.g. a reward worker) dies, so a killed worker leaves nothing behind;
2. with `isolate`, unshares new mount, network, PID, IPC and UTS namespaces (plus a user namespace when it
   is not root) and forks: the child is PID 1 of the new PID namespace, so when it dies the kernel kills
   every process the program started, wherever it went (setsid cannot escape a PID namespace);
3. in that child: assembles a fresh root (a tmpfs holding only /usr, the interpreter's prefix and
   /etc/ld.so.cache, bound read-only, nosuid and nodev; a /dev with null, zero, full, random and urandom;
   a /proc that shows only the sandbox's processes; a size-limited tmpfs /tmp holding the throwaway
   working directory), pivots into it and detaches the host's root, so no host home, checkout, data or
   temporary directory, nor the service's own files, can be read;
4. sets the rlimits, empties the capability bounding and ambient sets, sets no_new_privs (a setuid or
   file-capability binary gains nothing when executed), drops to the unprivileged `uid` (root only: root
   ignores RLIMIT_NPROC), clears every remaining capability, re-arms the parent-death signal (a uid change
   clears it), empties the environment and runs the program's entry script as __main__ in this same
   interpreter (no second start-up).

The parent enforces the wall clock and output caps by SIGKILLing this process (see `runner.py`).
"""

from __future__ import annotations

import atexit
import ctypes
import errno
import marshal
import os
import resource
import signal
import sys

PR_SET_PDEATHSIG = 1
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
SYS_MOUNT_SETATTR = 442  # x86_64 and aarch64 share the new-syscall numbers
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 1, 2, 4
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 38, 47, 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522
EXIT_SETUP_FAILED = 120

STAGING = "/tmp"  # where the new root is assembled (in the sandbox's own mount namespace)
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
ETC_FILES = ("/etc/ld.so.cache",)  # the dynamic linker's index of /usr/lib
DEVICES = ("null", "zero", "full", "random", "urandom")

_libc = ctypes.CDLL(None, use_errno=True)


class _MountAttr(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in ("attr_set", "attr_clr", "propagation", "userns_fd")]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint32) for name in ("effective", "permitted", "inheritable")]


def _check(result: int, what: str) -> None:
    if result != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"{what}: {os.strerror(number)}")


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


def _bind(source: str, target: str, root: str) -> None:
    """Bind host `source` at `root + target`, read-only, nosuid and nodev, submounts included."""
    inside = root + target
    if os.path.isdir(source):
        os.makedirs(inside, mode=0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(inside), mode=0o755, exist_ok=True)
        _write(inside, "")
    _mount(source, inside, None, MS_BIND | MS_REC)
    attr = _MountAttr(attr_set=MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)
    result = _libc.syscall(
        SYS_MOUNT_SETATTR, AT_FDCWD, inside.encode(), AT_RECURSIVE, ctypes.byref(attr), ctypes.sizeof(attr)
    )
    _check(result, f"mount_setattr({target}, read-only nosuid nodev)")


def _mirror_system_dirs(root: str) -> None:
    """/usr (programs and libraries) read-only, and /bin, /lib, ... as the host has them (usually symlinks
    into /usr on a merged-/usr system)."""
    for name in SYSTEM_DIRS:
        host = "/" + name
        if os.path.islink(host):
            os.symlink(os.readlink(host), root + host)
        elif os.path.isdir(host):
            _bind(host, host, root)


def _populate_dev(root: str) -> None:
    """A tmpfs /dev with only the harmless character devices (each its own bind mount, the only mounts
    without nodev, so they keep working), the /proc/self/fd links and /dev/shm pointing at /tmp."""
    dev = root + "/dev"
    os.mkdir(dev, 0o755)
    _mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,mode=0755")
    for name in DEVICES:
        _write(f"{dev}/{name}", "")
        _mount(f"/dev/{name}", f"{dev}/{name}", None, MS_BIND)
        _mount(None, f"{dev}/{name}", None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NOEXEC)
    for link, target in {
        "fd": "/proc/self/fd",
        "stdin": "/proc/self/fd/0",
        "stdout": "/proc/self/fd/1",
        "stderr": "/proc/self/fd/2",
        "shm": "/tmp",
    }.items():
        os.symlink(target, f"{dev}/{link}")
    _mount(None, dev, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _pivot_into(root: str) -> None:
    """Make `root` the filesystem root and detach the host's: nothing of it stays reachable."""
    os.chdir(root)
    _check(_libc.syscall(SYS_PIVOT_ROOT[os.uname().machine], b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "umount the host root")
    os.chdir("/")


def _build_filesystem(config: dict) -> str:
    """A fresh root: a tmpfs holding only /usr (+ /bin, /lib links), the interpreter's prefix and
    /etc/ld.so.cache (all read-only, nosuid, nodev), a minimal /dev, a private /proc and a size-limited
    tmpfs /tmp with the working directory; the host's root is detached. Returns the workdir."""
    prefix = config["prefix"]
    if prefix == STAGING or prefix.startswith(STAGING + "/"):
        raise OSError(
            f"the interpreter lives under {STAGING}, which the sandbox covers; install it elsewhere"
        )
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    root = STAGING
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    _mirror_system_dirs(root)
    if not os.path.exists(root + prefix):  # an interpreter outside /usr (pyenv, uv, conda)
        _bind(prefix, prefix, root)
    for path in ETC_FILES:
        if os.path.isfile(path):
            _bind(path, path, root)
    _populate_dev(root)
    os.mkdir(root + "/tmp", 0o1777)
    _mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={config['scratch_bytes']},mode=1777")
    os.mkdir(root + "/proc", 0o555)
    _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _pivot_into(root)
    _mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    workdir = "/tmp/work"
    os.mkdir(workdir, 0o700)
    return workdir


def _drop_privileges(uid: int | None) -> None:
    """No capability can come back: empty the bounding and ambient sets, set no_new_privs (setuid and
    file-capability bits are ignored by every later exec), change to `uid` (root only; that clears the
    permitted and effective sets), then clear whatever capabilities are left (the user-namespace path)."""
    for capability in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0 and ctypes.get_errno() == errno.EINVAL:
            break  # past the kernel's last capability
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "prctl(PR_CAP_AMBIENT_CLEAR_ALL)")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    header = _CapHeader(version=LINUX_CAPABILITY_VERSION_3, pid=0)
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset(no capabilities)")


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
    _drop_privileges(uid if root else None)
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
