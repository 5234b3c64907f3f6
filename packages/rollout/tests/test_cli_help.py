"""`grpo-rollout serve --help` names what its registries hold, read from them, never typed; the config
checks a generator name against the same registry, without torch."""

from __future__ import annotations

import subprocess
import sys

import pytest
from grpo_rollout.backends.registry import GENERATORS
from grpo_rollout.cli import build_parser
from grpo_rollout.config import RolloutServiceConfig
from grpo_rollout.environments import ENVIRONMENTS
from pydantic import ValidationError


def test_serve_help_lists_the_generator_backends_and_environments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    shown = capsys.readouterr().out
    assert f"registered generator backends (--generator): {', '.join(sorted(GENERATORS))}\n" in shown
    assert f"more with --plugin): {', '.join(sorted(ENVIRONMENTS))}\n" in shown


def test_the_config_validates_and_resolves_a_backends_limits_without_torch() -> None:
    """The config and the GENERATORS registry import no torch: a backend's default limits are
    known (sglang: one prompt per call, 256 calls at once) before any backend is built."""
    code = (
        "import sys; from grpo_rollout.config import RolloutServiceConfig;"
        "c = RolloutServiceConfig(model='m', generator='sglang', reward={'address': '127.0.0.1:1'});"
        "limits = c.limits.for_backend(c.generator);"
        "assert (limits.batch_prompts, limits.max_concurrent_batches) == (1, 256), limits;"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_an_unknown_generator_is_refused_naming_the_registered_ones() -> None:
    with pytest.raises(ValidationError, match=r"unknown generator backend 'vllm'; registered: hf, sglang"):
        RolloutServiceConfig(model="m", generator="vllm", reward={"address": "127.0.0.1:1"})
