"""grpo train / eval make torch's OpenMP threads sleep when idle, in the learner and its services."""

from __future__ import annotations

import os
import subprocess
import sys

from grpo_learner.local.openmp_policy import prefer_passive_waiting


def test_passive_waiting_is_the_default_and_a_users_choice_wins() -> None:
    environ: dict[str, str] = {}
    assert prefer_passive_waiting(environ) == "PASSIVE" and environ == {"OMP_WAIT_POLICY": "PASSIVE"}
    chosen = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert prefer_passive_waiting(chosen) == "ACTIVE" and chosen == {"OMP_WAIT_POLICY": "ACTIVE"}


def test_the_cli_sets_it_before_torch_is_imported() -> None:
    """The OpenMP runtime reads the variable when torch loads: `grpo train` must set it first."""
    code = (
        "import os, sys\n"
        "import grpo_learner.cli as cli\n"
        "assert 'torch' not in sys.modules, 'importing the CLI must not load torch'\n"
        "seen = {}\n"
        "def record(args):\n"
        "    seen['policy'] = os.environ.get('OMP_WAIT_POLICY')\n"
        "    return 0\n"
        "cli.cmd_train = record\n"
        "import grpo_learner.local.openmp_policy as policy\n"
        "set_policy = policy.prefer_passive_waiting\n"
        "def spy(environ):\n"
        "    seen['torch when set'] = 'torch' in sys.modules\n"
        "    return set_policy(environ)\n"
        "policy.prefer_passive_waiting = spy\n"
        "assert cli.main(['train', '--no-progress']) == 0\n"
        "print(seen)\n"
    )
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "'torch when set': False" in result.stdout and "'policy': 'PASSIVE'" in result.stdout
