"""The example recipes are real configs: each loads and validates as the learner would load it."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from grpo_common.config import deep_merge
from grpo_learner.config import load_learner_config
from grpo_learner.embedded.default_run import EMBEDDED_DEFAULTS, embedded_config
from grpo_learner.embedded.tasks import EmbeddedConfig

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# embedded runs: no model named, one is built
EMBEDDED = ("tiny-default.toml", "tool-use.toml", "preference.toml")
RECIPES = sorted(p for p in EXAMPLES.glob("*.toml") if p.name not in EMBEDDED)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_loads_and_names_a_model(recipe: Path) -> None:
    config = load_learner_config(recipe, {})
    assert config.model.name_or_path.startswith("Qwen/")
    assert config.rollout.group_size >= 2


def test_tiny_default_example_matches_the_embedded_defaults() -> None:
    written = tomllib.loads((EXAMPLES / "tiny-default.toml").read_text())
    assert deep_merge(EMBEDDED_DEFAULTS, written) == EMBEDDED_DEFAULTS
    assert embedded_config(written).train.max_steps == EMBEDDED_DEFAULTS["train"]["max_steps"]


def test_tool_use_example_is_an_embedded_run_of_the_tool_use_task() -> None:
    written = tomllib.loads((EXAMPLES / "tool-use.toml").read_text())
    embedded = EmbeddedConfig.model_validate(written.pop("embedded"))
    assert embedded.task == "tool-use"
    config = embedded_config(written, embedded)
    assert config.train.max_steps == written["train"]["max_steps"]


def test_preference_example_is_an_embedded_run_against_its_reward_model() -> None:
    written = tomllib.loads((EXAMPLES / "preference.toml").read_text())
    embedded = EmbeddedConfig.model_validate(written.pop("embedded"))
    assert embedded.task == "preference" and embedded.embedded_task.reward_model is not None
    config = embedded_config(written, embedded)
    assert [c.name for c in config.reward.components] == [embedded.embedded_task.reward_model.name]
    assert config.train.max_steps == written["train"]["max_steps"]


def test_there_are_cpu_gpu_and_multi_machine_recipes() -> None:
    names = {p.name for p in RECIPES}
    assert {"qwen2.5-0.5b-cpu.toml", "qwen2.5-0.5b-sglang-1gpu.toml", "multi-machine.toml"} <= names


def test_the_dapo_recipe_sends_the_overlong_penalty() -> None:
    from grpo_learner.rollouts.client import reward_spec_to_proto

    config = load_learner_config(EXAMPLES / "qwen2.5-0.5b-sglang-1gpu.toml", {})
    spec = reward_spec_to_proto(config.reward)
    assert [c.name for c in spec.components] == ["correctness", "length"]
    length = spec.components[1]
    assert (length.max_completion_tokens, length.overlong_buffer_tokens) == (1024, 256)
    assert length.max_completion_tokens == config.rollout.sampling.max_new_tokens
