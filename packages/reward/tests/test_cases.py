"""The labelled case suite (tests/cases/math_cases.jsonl): every category the verifier must get right."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from grpo_reward import Verdict, Verifier

CASES = [json.loads(line) for line in (Path(__file__).parent / "cases" / "math_cases.jsonl").open()]


def test_suite_covers_every_category_with_at_least_300_cases() -> None:
    categories = Counter(case["category"] for case in CASES)
    assert len(CASES) >= 300
    expected = {
        "extraction", "normalisation", "integers", "rationals", "scientific", "radicals", "pi_constants",
        "expressions", "equations", "inequalities", "sets_lists", "tuples", "intervals", "complex",
        "matrices", "percent", "degrees", "text", "plus_minus", "traps", "adversarial",
    }  # fmt: skip
    assert expected <= set(categories)
    assert all(categories[name] >= 5 for name in expected)


@pytest.fixture(scope="module")
def verdicts(verifier: Verifier) -> list[Verdict]:
    return verifier.verify_many([(case["completion"], case["reference"]) for case in CASES])


@pytest.mark.parametrize(
    "index", range(len(CASES)), ids=[f"{c['category']}-{i}" for i, c in enumerate(CASES)]
)
def test_verdict_matches_label(index: int, verdicts: list[Verdict]) -> None:
    case, verdict = CASES[index], verdicts[index]
    assert verdict.correct is case["correct"], (case["reference"], verdict)
    assert verdict.reward == (1.0 if case["correct"] else 0.0)
    assert verdict.reason
