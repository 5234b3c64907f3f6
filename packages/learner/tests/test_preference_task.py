"""The preference demo's parts: the Bradley–Terry loss against hand-computed values, the synthetic pairs,
the independent rule (the reward service's own `regex` task), and a reward model that learns the pairs.

The whole demo (`grpo train --config examples/preference.toml`) is run by hand; its figures are in
the closing note of issue 28 and benchmarks/RESULTS.md.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

import pytest
import torch
from grpo_learner.embedded.default_run import embedded_config
from grpo_learner.embedded.preference_task import (
    UNITS,
    preference_pairs,
    unit_of,
    unit_problems,
    unit_transcript,
)
from grpo_learner.embedded.reward_model import (
    bradley_terry_loss,
    build_reward_model,
    preference_accuracy,
    train_reward_model,
)
from grpo_learner.embedded.tasks import EmbeddedConfig
from grpo_learner.embedded.tokenizer import build_tokenizer
from grpo_reward.tasks import TASKS


def test_bradley_terry_loss_is_minus_log_sigmoid_of_the_margin() -> None:
    chosen, rejected = torch.tensor([2.0, 0.0, -1.0]), torch.tensor([0.0, 0.0, 1.0])
    expected = [-math.log(1 / (1 + math.exp(-m))) for m in (2.0, 0.0, -2.0)]  # 0.1269, 0.6931, 2.1269
    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(sum(expected) / 3, rel=1e-6)


def test_the_split_holds_out_whole_problems_and_every_unit() -> None:
    train, heldout = unit_problems(seed=0)
    assert len(heldout) == 200 and len(train) + len(heldout) == 400 * len(UNITS)
    assert not {p.id for p in train} & {p.id for p in heldout}
    assert {unit_of(p) for p in heldout} == set(UNITS)


def test_pairs_prefer_the_right_answer_with_its_unit() -> None:
    train, _ = unit_problems(seed=0)
    pairs = preference_pairs(train[:1000], random.Random(0))
    kinds = {"bare": 0, "other unit": 0, "wrong number": 0}
    for problem, pair in zip(train, pairs, strict=False):
        number, unit = str(problem.value.numerator), unit_of(problem)
        assert pair.prompt == problem.prompt and pair.chosen == f"{number} {unit}"
        assert pair.rejected != pair.chosen
        if pair.rejected == number:
            kinds["bare"] += 1
        elif pair.rejected.startswith(f"{number} "):
            kinds["other unit"] += 1
        else:
            assert pair.rejected.endswith(f" {unit}"), pair
            kinds["wrong number"] += 1
    assert 450 < kinds["bare"] < 550 and 200 < kinds["other unit"] < 300 and 200 < kinds["wrong number"] < 300


def test_the_rule_is_the_reward_services_regex_task_on_the_problems_reference() -> None:
    (problem,) = [p for p in unit_problems(seed=0)[1] if unit_of(p) == "kg"][:1]
    rule = TASKS[problem.task]
    number = str(problem.value.numerator)
    assert rule(f"{number} kg", problem.reference).correct
    for wrong in (number, f"{number} cm", f"{number} kgkg", f"{number} kg please", f"{number}0 kg"):
        assert not rule(wrong, problem.reference).correct, wrong


def test_the_warm_up_states_the_unit_at_its_rate() -> None:
    train, _ = unit_problems(seed=0)
    rng = random.Random(0)
    texts = [unit_transcript(p, rng, unit_rate=0.3)[0][0] for p in train[:1000]]
    assert 0.25 < sum(" " in text for text in texts) / len(texts) < 0.35


@pytest.fixture
def one_thread() -> Iterator[None]:
    """A tiny model's ops are too short for a second OpenMP thread: on a loaded 2-core box two threads
    made this test's 15 steps 50x slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_a_reward_model_trained_with_bradley_terry_ranks_held_out_pairs_right(one_thread: None) -> None:
    """The unit-or-not pairs only (the demo's wrong-number pairs take longer to learn), a short run."""
    train, heldout = unit_problems(seed=0)
    tokenizer = build_tokenizer()
    model = build_reward_model(tokenizer, seed=0)
    bare = [p for p in preference_pairs(train, random.Random(0)) if " " not in p.rejected]
    heldout_pairs = [p for p in preference_pairs(heldout, random.Random(1)) if " " not in p.rejected]
    assert preference_accuracy(model, tokenizer, heldout_pairs) < 0.9  # an untrained model does not
    losses = train_reward_model(model, tokenizer, bare, steps=15, batch_size=32, seed=0)
    assert losses[-1] < losses[0]
    assert preference_accuracy(model, tokenizer, heldout_pairs) > 0.95


def test_the_preference_run_s_settings_serve_the_reward_model_as_its_only_component() -> None:
    config = embedded_config({}, EmbeddedConfig(task="preference"))
    assert [c.name for c in config.reward.components] == ["prefer"]
    assert str(config.run_dir) == "runs/preference"
    assert config.loss.beta > 0  # the KL guard against gaming the reward model
