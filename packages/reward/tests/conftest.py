"""Shared fixtures: one Verifier (two worker processes) for the whole reward test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from grpo_reward import Verifier


@pytest.fixture(scope="session")
def verifier() -> Iterator[Verifier]:
    with Verifier(workers=2) as shared:
        assert shared.wait_ready(120), "verification workers did not start"
        yield shared
