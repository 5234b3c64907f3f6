"""Shared fixtures: one Verifier (two worker processes) for the whole reward test session; makes
reward_fixtures.py importable under --import-mode=importlib."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpo_reward import Verifier

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def verifier() -> Iterator[Verifier]:
    with Verifier(workers=2) as shared:
        assert shared.wait_ready(120), "verification workers did not start"
        yield shared
