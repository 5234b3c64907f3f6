"""`grpo train --nproc N`: start the same command as N learner processes under torchrun.

It is plain `python -m torch.distributed.run --nproc-per-node N -m grpo_learner train <the same
flags without --nproc>`: one machine, rendezvous on a free local port. For several machines, call
torchrun yourself (`--nnodes`, `--rdzv-endpoint`, ...) with `-m grpo_learner train ...`.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Sequence

logger = logging.getLogger(__name__)


def without_nproc(argv: Sequence[str]) -> list[str]:
    """argv minus `--nproc N` / `--nproc=N`."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def torchrun_command(argv: Sequence[str], nproc: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # one machine: rendezvous on a free port, no MASTER_* to set
        "--nproc-per-node",
        str(nproc),
        "-m",
        "grpo_learner",
        *without_nproc(argv),
    ]


def relaunch(argv: Sequence[str], nproc: int) -> int:
    """Run the learner as `nproc` processes; returns torchrun's exit status."""
    command = torchrun_command(argv, nproc)
    logger.info("starting %d learner processes: %s", nproc, " ".join(command))
    return subprocess.run(command, check=False).returncode
