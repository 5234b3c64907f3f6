"""Normalisation removes presentation, never value."""

from __future__ import annotations

import pytest
from grpo_reward.normalization import normalize_answer, normalize_text


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        (r"\left( \dfrac{1}{2} \right)", r"( \frac{1}{2} )"),
        (r"\tfrac{3}{4}", r"\frac{3}{4}"),
        (r"5\text{ cm}", "5"),
        (r"12 \mbox{ apples}", "12"),
        (r"30^\circ", "30"),
        (r"30^{\circ}", "30"),
        (r"25\%", "25"),
        (r"\$1,000", "1000"),
        (r"1\,000", "1000"),
        (r"1{,}000", "1000"),
        ("7.", "7"),
        (r"\!7", "7"),
        ("$x + 1$", "x + 1"),
        (r"0.\overline{3}", r"\frac{1}{3}"),
        (r"x \in [1, 2)", "[1, 2)"),
    ],
)
def test_normalize_answer(raw: str, normal: str) -> None:
    assert normalize_answer(raw) == normal


def test_commas_inside_tuples_are_kept() -> None:
    assert normalize_answer("(100,200)") == "(100,200)"
    assert normalize_answer("1,2") == "1,2"


def test_text_form_ignores_case_markup_and_choice_parentheses() -> None:
    assert normalize_text(r"\text{Monday}") == normalize_text("monday")
    assert normalize_text(r"\text{(C)}") == "c"
