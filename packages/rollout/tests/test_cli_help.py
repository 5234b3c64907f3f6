"""`grpo-rollout serve --help` names what its registries hold, read from them, never typed."""

from __future__ import annotations

import pytest
from grpo_rollout.backends.registry import GENERATORS
from grpo_rollout.cli import build_parser
from grpo_rollout.environments import ENVIRONMENTS


def test_serve_help_lists_the_generator_backends_and_environments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    shown = capsys.readouterr().out
    assert f"registered generator backends (--generator): {', '.join(sorted(GENERATORS))}\n" in shown
    assert f"more with --plugin): {', '.join(sorted(ENVIRONMENTS))}\n" in shown
