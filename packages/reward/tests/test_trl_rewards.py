"""The verifier as TRL reward functions, called exactly as TRL's GRPOTrainer calls them, and score_batch.

`call_like_trl` repeats what `GRPOTrainer._calculate_rewards` does in TRL 1.16 (trl/trainer/
grpo_trainer.py): every dataset column but prompt/completion/completion_ids becomes a keyword list,
TRL adds trainer_state, log_extra and log_metric, and each function is called as
`f(prompts=..., completions=..., completion_ids=..., **kwargs)`; a None becomes NaN. The function's
name in TRL's logs is `getattr(f, "__name__", type(f).__name__)` (trl.trainer.utils.get_callable_name).
examples/trl-reward/train.py runs them inside a real GRPOTrainer (bench group).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from grpo_reward import Verifier, score_batch
from grpo_reward.integrations.trl import VerifierRewards

HARD = r"\boxed{\int_0^1 e^{x^{x^x}} \sin(x^{x}) dx}"


def call_like_trl(func: Any, inputs: list[dict[str, Any]], completions: list[Any]) -> list[float]:
    prompts = [example["prompt"] for example in inputs]
    keys = [key for key in inputs[0] if key not in ["prompt", "completion", "completion_ids"]]
    reward_kwargs = {key: [example[key] for example in inputs] for key in keys}
    reward_kwargs["trainer_state"] = object()
    reward_kwargs["log_extra"] = lambda *args, **kwargs: None
    reward_kwargs["log_metric"] = lambda *args, **kwargs: None
    output = func(
        prompts=prompts, completions=completions, completion_ids=[[1, 2]] * len(prompts), **reward_kwargs
    )
    assert len(output) == len(prompts)
    return [reward if reward is not None else math.nan for reward in output]


GSM8K = [
    {"prompt": "Tom has 3 apples and buys 4. How many?", "answer": "3 + 4 = 7\n#### 7", "level": 1},
    {"prompt": "Half of 3?", "answer": "#### 1.5", "level": 2},
    {"prompt": "Half of 3?", "answer": "#### 1.5", "level": 2},
]


def test_standard_completions_are_graded_against_the_answer_column(verifier: Verifier) -> None:
    rewards = VerifierRewards(verifier)
    completions = ["3 + 4 = 7. The answer is 7", r"so $\boxed{\frac{3}{2}}$", "I think 2"]
    assert call_like_trl(rewards.correctness, GSM8K, completions) == [1.0, 1.0, 0.0]
    assert call_like_trl(rewards.format, GSM8K, completions) == [1.0, 1.0, 0.0]
    assert [getattr(f, "__name__", None) for f in (rewards.correctness, rewards.format)] == [
        "correctness",
        "format",
    ]


def test_conversational_completions_with_a_task_column_and_its_fields(verifier: Verifier) -> None:
    rewards = VerifierRewards(verifier)
    rows = [
        {"prompt": [{"role": "user", "content": "2+2?"}], "solution": "4", "task": "math"},
        {
            "prompt": [{"role": "user", "content": "Which is red?"}],
            "solution": "B",
            "task": "choice",
            "choices": ["grass", "blood", "sky"],
        },
    ]
    rows[0]["choices"] = None  # a column every row has; None where it does not apply
    completions = [
        [{"role": "assistant", "content": r"\boxed{4}"}],
        [{"role": "assistant", "content": "The answer is (C)"}],
    ]
    assert call_like_trl(rewards.correctness, rows, completions) == [1.0, 0.0]
    completions[1] = [{"role": "assistant", "content": "It is blood, so the answer is (B)"}]
    assert call_like_trl(rewards.correctness, rows, completions) == [1.0, 1.0]


def test_the_terms_of_one_batch_grade_it_once(verifier: Verifier) -> None:
    rewards = VerifierRewards(verifier)
    columns = {"answer": [row["answer"] for row in GSM8K]}
    first = rewards.grade(["7", "1.5", "2"], columns)
    assert rewards.grade(["7", "1.5", "2"], columns) is first  # the format call reuses correctness's
    assert rewards.grade(["7", "1.5", "3"], columns) is not first


def test_an_item_out_of_time_is_none_never_a_zero(verifier: Verifier) -> None:
    rewards = VerifierRewards(verifier, timeout_s=0.01)
    rewards_out = call_like_trl(rewards.correctness, GSM8K[:2], [HARD, "#### 7"])
    assert math.isnan(rewards_out[0]) and rewards_out[1] == 0.0


def test_a_dataset_without_a_reference_column_is_refused_naming_its_columns(verifier: Verifier) -> None:
    rewards = VerifierRewards(verifier)
    with pytest.raises(
        ValueError, match=r"one of \['solution', 'answer', 'reference'\] \(its columns: \['gold'\]\)"
    ):
        call_like_trl(rewards.correctness, [{"prompt": "q", "gold": "1"}], ["1"])


def test_score_batch_grades_pairs_in_order(verifier: Verifier) -> None:
    verdicts = score_batch([r"\boxed{0.75}", "#### 4", "no"], [r"\frac34", "5", "1"], verifier=verifier)
    assert [v.correct for v in verdicts] == [True, False, False]
    choice = score_batch(["(B)"], ["B"], task="choice", fields=[{"choices": ["x", "y"]}], verifier=verifier)
    assert choice[0].correct
    with pytest.raises(ValueError, match="one reference"):
        score_batch(["a", "b"], ["1"], verifier=verifier)
