"""Final-answer extraction: explicit forms only, the last one wins, nothing found means nothing."""

from __future__ import annotations

from grpo_reward.extraction import as_choice, extract_answer, extract_reference, last_boxed


def test_last_boxed_handles_nested_braces_and_escaped_braces() -> None:
    assert last_boxed(r"x \boxed{\frac{1}{2}} y \boxed{\{1, \frac{3}{4}\}}") == r"\{1, \frac{3}{4}\}"


def test_doubled_boxes_and_fbox_unwrap() -> None:
    assert last_boxed(r"\boxed{\boxed{7}}") == "7"
    assert extract_answer(r"so \fbox{9}").answer == "9"


def test_unclosed_box_is_not_an_answer() -> None:
    assert extract_answer(r"so \boxed{\frac{1}{2}").answer is None


def test_gsm8k_marker_takes_the_rest_of_the_line() -> None:
    extraction = extract_answer("work...\n#### 1,234\n")
    assert (extraction.answer, extraction.form) == ("1,234", "gsm8k")


def test_minerva_final_answer_sentence() -> None:
    text = "Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct."
    assert extract_answer(text).answer == "$\\frac{1}{2}$"


def test_answer_phrases_and_markdown_bold() -> None:
    assert extract_answer("So the answer is 12.").answer == "12"
    assert extract_answer("**Answer:** 3.5").answer == "3.5"
    assert extract_answer("The answer is $x^2$ since...").answer == "$x^2$"


def test_multiple_choice_letters() -> None:
    assert extract_answer("The answer is (C).").answer == "C"
    assert as_choice(r"\text{(B)}") == "B"
    assert as_choice("(D) 17") == "D"
    assert as_choice("Cat") == "Cat"


def test_no_explicit_answer_extracts_nothing_unless_fallback_requested() -> None:
    text = "I computed 6*7 = 42 and then 43"
    assert extract_answer(text).answer is None
    fallback = extract_answer(text, fallback_last_number=True)
    assert (fallback.answer, fallback.form, fallback.explicit) == ("43", "last_number", False)


def test_boxed_beats_an_earlier_answer_phrase_and_format_is_explicit() -> None:
    extraction = extract_answer(r"The answer is 3. Actually \boxed{4}")
    assert (extraction.answer, extraction.explicit) == ("4", True)


def test_reference_forms() -> None:
    assert extract_reference("She sold 72.\n#### 72") == "72"
    assert extract_reference(r"Thus $\boxed{\frac{1}{2}}$.") == r"\frac{1}{2}"
    assert extract_reference("(C)") == "C"


def test_extraction_is_linear_on_deep_braces() -> None:
    text = r"\boxed{" + "{" * 100_000 + "}" * 100_000 + "}"
    assert extract_answer(text).answer is not None
