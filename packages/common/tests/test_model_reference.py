"""check_model_reference tells a checkpoint directory, a hub id and a mistake apart without the hub."""

from __future__ import annotations

from pathlib import Path

import pytest
from grpo_common.model_reference import check_model_reference


def test_directories_and_hub_ids_pass_unchanged(tmp_path: Path) -> None:
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    for name in (str(tmp_path / "ckpt"), str(tmp_path / "adapter"), "Qwen/Qwen2.5-0.5B-Instruct", "gpt2"):
        assert check_model_reference(name) == name


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("/no/such/checkpoint", "no such directory"),
        ("./runs/typo/model", "no such directory"),
        ("~/missing-model", "no such directory"),
        ("org/name/extra", "neither a checkpoint directory here nor a hub id"),
        ("has space/model", "neither a checkpoint directory here nor a hub id"),
        ("org/name-", "neither a checkpoint directory here nor a hub id"),
    ],
)
def test_what_cannot_be_a_model_is_named(name: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        check_model_reference(name, "--model")


def test_a_file_or_a_directory_without_a_config_is_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "data.jsonl").write_text("{}\n")
    with pytest.raises(ValueError, match="is a file"):
        check_model_reference(str(tmp_path / "data.jsonl"))
    with pytest.raises(ValueError, match=r"without config\.json"):
        check_model_reference(str(tmp_path))
