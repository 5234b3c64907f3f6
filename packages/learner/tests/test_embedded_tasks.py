"""The embedded tasks: the tool-use task's problems, tokens and warm-up, and the [embedded] section."""

from __future__ import annotations

import random

import pytest
from grpo_learner.embedded.default_run import EMBEDDED_DEFAULTS, embedded_config
from grpo_learner.embedded.tasks import EMBEDDED_TASKS, EmbeddedConfig
from grpo_learner.embedded.tokenizer import build_tokenizer
from grpo_learner.embedded.tool_task import TOOL_TOKENS, multiplication_problems, tool_transcript
from grpo_learner.embedded.warmup import encode_example
from pydantic import ValidationError


def test_tool_tokens_are_single_tokens_and_the_default_ids_do_not_move() -> None:
    plain, tool = build_tokenizer(), build_tokenizer(TOOL_TOKENS)
    for token in TOOL_TOKENS:
        assert len(tool(token, add_special_tokens=False).input_ids) == 1
    text = "12/3=\\boxed{\\frac{1}{2}}"
    assert tool(text).input_ids == plain(text).input_ids
    episode = "12*34=<calc>12*34</calc><result>408</result>\\boxed{408}"
    assert tool.decode(tool(episode).input_ids) == episode


def test_multiplication_split_is_seeded_disjoint_and_beyond_mental_arithmetic() -> None:
    train, heldout = multiplication_problems(0)
    again, _ = multiplication_problems(0)
    other, _ = multiplication_problems(1)
    assert [p.id for p in train] == [p.id for p in again] != [p.id for p in other]
    assert not {p.id for p in train} & {p.id for p in heldout}
    assert len(heldout) == 200
    for p in heldout:
        a, b = map(int, p.prompt.removesuffix("=").split("*"))
        assert 10 <= a <= 999 and 10 <= b <= 99 and p.reference == str(a * b)


def test_the_warm_up_trains_the_call_and_the_answer_but_not_the_observation() -> None:
    tokenizer = build_tokenizer(TOOL_TOKENS)
    problem = multiplication_problems(0)[1][0]
    segments = tool_transcript(problem, random.Random(0), tool_rate=1.0)
    ids, mask = encode_example(tokenizer, problem, segments)
    trained = tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if m])
    untrained = tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if not m])
    expression = problem.prompt.removesuffix("=")
    assert trained == f"<calc>{expression}</calc>\\boxed{{{problem.reference}}}</s>"
    assert untrained == f"{problem.prompt}<result>{problem.reference}</result>"


def test_the_tool_rate_is_the_share_of_transcripts_that_call_the_tool() -> None:
    rng = random.Random(0)
    problems = multiplication_problems(0)[0][:2000]
    calls = sum(len(tool_transcript(p, rng, tool_rate=0.3)) == 3 for p in problems)
    assert 0.25 < calls / len(problems) < 0.35


def test_an_embedded_task_layers_its_settings_under_the_run_s() -> None:
    tool_use = EmbeddedConfig(task="tool-use")
    config = embedded_config({"train": {"max_steps": 7}}, tool_use)
    assert config.train.max_steps == 7
    assert str(config.run_dir) == EMBEDDED_TASKS["tool-use"].settings["run_dir"]
    default_budget = EMBEDDED_DEFAULTS["rollout"]["sampling"]["max_new_tokens"]
    assert config.rollout.sampling.max_new_tokens != default_budget
    assert tool_use.steps == EMBEDDED_TASKS["tool-use"].warmup_steps
    assert EmbeddedConfig(task="tool-use", warmup_steps=3).steps == 3
    assert embedded_config({}).model_dump() == embedded_config({}, EmbeddedConfig()).model_dump()


def test_an_unknown_embedded_task_names_the_known_ones() -> None:
    with pytest.raises(ValidationError, match=", ".join(sorted(EMBEDDED_TASKS))):
        EmbeddedConfig(task="chess")
