"""What one request may ask of the `python` environment is bounded: a request's config_json cannot give a
program more than 1 GiB of address space or the model more than 16,384 characters of its output (each
of a request's episodes may run a program at once; one program used to be allowed 8 GiB, 2.5 GB held)."""

from __future__ import annotations

import pytest
from grpo_rollout.environments.python_tool import PythonToolConfig
from pydantic import ValidationError


@pytest.mark.parametrize(
    ("setting", "allowed", "refused"), [("memory_mb", 1024, 1025), ("max_output_chars", 16_384, 16_385)]
)
def test_a_request_cannot_ask_a_python_tool_for_more_than_its_bound(
    setting: str, allowed: int, refused: int
) -> None:
    assert getattr(PythonToolConfig.model_validate({setting: allowed}), setting) == allowed
    with pytest.raises(ValidationError, match=setting):
        PythonToolConfig.model_validate({setting: refused})
