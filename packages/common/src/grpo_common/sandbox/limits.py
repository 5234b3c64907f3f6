"""What one sandboxed run may use: CPU time, memory, file size, processes, wall clock and output."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class SandboxLimits:
    """Per-run limits. CPU, memory, file size, processes and open files are kernel rlimits in the child;
    the wall clock, the output cap and `cpu_s` of the whole process tree (a fork bomb's processes together;
    RLIMIT_CPU, in whole seconds, caps each one) are enforced by the parent, which kills the child's whole
    process tree when any is exceeded. `wall_s` is a backstop for programs that sleep: callers size it
    generously so that a loaded machine never reaches it with a program that only computes.

    `memory_bytes` is RLIMIT_AS (address space, which over-counts a little: the interpreter maps ~30 MB
    before the program runs). `max_processes` is RLIMIT_NPROC for the child's own uid, so it counts every
    process and thread of this run and nothing else's. `scratch_bytes` sizes the tmpfs that holds the
    working directory and /tmp.
    """

    cpu_s: float = 2.0
    wall_s: float = 3.0
    memory_bytes: int = 512 * 1024 * 1024
    file_size_bytes: int = 16 * 1024 * 1024
    max_processes: int = 32
    open_files: int = 64
    output_bytes: int = 1024 * 1024
    scratch_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value <= 0:
                raise ValueError(f"sandbox limit {name} must be positive, got {value}")

    def as_launcher_config(self) -> dict[str, Any]:
        """The rlimits as the launcher script reads them (it imports nothing from grpo_common)."""
        return {
            "cpu_s": math.ceil(self.cpu_s),  # RLIMIT_CPU counts whole seconds
            "memory_bytes": self.memory_bytes,
            "file_size_bytes": self.file_size_bytes,
            "max_processes": self.max_processes,
            "open_files": self.open_files,
            "scratch_bytes": self.scratch_bytes,
        }


DEFAULT_SANDBOX_LIMITS = SandboxLimits()
