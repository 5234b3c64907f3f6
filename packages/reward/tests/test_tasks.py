"""The built-in reward tasks as pure functions (choice, exact, regex, math), the fields_json checks and the
plugin loader, against hand-written cases."""

from __future__ import annotations

import pytest
from grpo_common.registry import UnknownName
from grpo_common.row_fields import FieldLimits, InvalidFields, parse_fields
from grpo_reward.tasks import TASKS
from grpo_reward.tasks.contract import TaskScore, Undecided
from grpo_reward.tasks.plugins import PluginError, load_plugins


def _grade(task: str, completion: str, reference: str, **fields: object) -> TaskScore:
    result = TASKS.get_item(task, import_references=False)(completion, reference, **fields)
    assert isinstance(result, TaskScore)
    return result


def test_every_built_in_is_registered_by_name() -> None:
    assert {"math", "choice", "exact", "regex"} <= set(TASKS)


@pytest.mark.parametrize(
    ("completion", "reference", "choices", "correct"),
    [
        (r"so \boxed{C}", "C", None, True),
        ("The answer is (C).", "(C)", None, True),
        ("Between (A) and (C), I pick (C)", "C", None, True),  # no explicit answer: the last (X)
        ("The answer is B", "C", None, False),
        (r"\boxed{Paris}", "B", ["London", "Paris", "Rome"], True),  # option text, letter reference
        ("The answer is (B)", "Paris", ["London", "Paris"], True),  # letter, text reference
        ("The answer is: rome", "C", {"A": "London", "B": "Paris", "C": "Rome"}, True),
        ("The answer is (D)", "A", ["x", "y", "z"], False),  # D is no option
        ("The answer is B. Paris", "B", ["London", "Paris"], True),
    ],
)
def test_choice_grades_letters_and_option_text(
    completion: str, reference: str, choices: object, correct: bool
) -> None:
    assert _grade("choice", completion, reference, choices=choices).correct is correct


def test_choice_refuses_choices_of_the_wrong_type() -> None:
    with pytest.raises(ValueError, match="choices"):
        _grade("choice", "(A)", "A", choices="ABCD")


@pytest.mark.parametrize(
    ("completion", "reference", "correct"),
    [
        ("The answer is  New   York.", "new york", True),
        (r"\boxed{\text{Paris}}", "PARIS", True),
        ("ＡＢＣ", "abc", True),  # NFKC: full-width letters
        ("The answer is Paris, France", "Paris", False),
        ("  hello  ", "hello", True),  # no explicit answer: the whole completion
    ],
)
def test_exact_matches_after_normalisation(completion: str, reference: str, correct: bool) -> None:
    assert _grade("exact", completion, reference).correct is correct


def test_regex_fullmatches_the_reference_or_the_pattern_field() -> None:
    assert _grade("regex", r"\boxed{2024-01-31}", r"\d{4}-\d{2}-\d{2}").correct
    assert not _grade("regex", r"\boxed{2024-01-31 or so}", r"\d{4}-\d{2}-\d{2}").correct  # fullmatch
    assert _grade("regex", r"\boxed{YES}", "ignored", pattern="yes|no", ignore_case=True).correct
    unusable = _grade("regex", r"\boxed{x}", "(unclosed")
    assert not unusable.correct and "unusable pattern" in unusable.reason


def test_math_task_has_a_quick_path_that_defers_hard_items() -> None:
    math_task = TASKS["math"]
    quick = math_task.quick(r"\boxed{0.75}", r"\frac{3}{4}")  # type: ignore[attr-defined]
    assert isinstance(quick, TaskScore) and quick.correct
    deferred = math_task.quick(r"\boxed{\sqrt{8}}", r"2\sqrt2")  # type: ignore[attr-defined]
    assert deferred == Undecided(extracted=r"\sqrt{8}")
    full = _grade("math", r"\boxed{\sqrt{8}}", r"2\sqrt2")
    assert full.correct and dict(full.components) == {"correctness": 1.0, "format": 1.0}
    assert _grade("math", "it is 7", "7", fallback_last_number=True).correct
    assert not _grade("math", "it is 7", "7").correct


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1]", "must be a JSON object"),
        ('{"a": NaN}', "not a finite number"),
        ('{"a": 1e400}', "not a finite number"),
        ('{"a": ' + "9" * 5000 + "}", "not valid JSON"),  # over Python's int digit limit
        ('{"a": [[[[1]]]]}', "nested deeper than 3"),
        ("[" * 50_000 + "]" * 50_000, "nested deeper"),
        ('{"completion": "x"}', "'completion'"),
        ('{"a": "' + "x" * 100 + '"}', "over this server's limit of 64"),
    ],
)
def test_fields_json_is_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(InvalidFields, match=message):
        parse_fields(text, FieldLimits(max_bytes=64 if "x" * 100 in text else 1 << 20, max_depth=3))


def test_fields_json_parses_an_object_and_empty_means_none() -> None:
    assert parse_fields("", FieldLimits()) == {}
    assert parse_fields('{"choices": ["a", "b"], "n": 2}', FieldLimits()) == {"choices": ["a", "b"], "n": 2}


def test_wire_lookups_never_import_but_operator_references_register(tmp_path, monkeypatch) -> None:
    source = "def score(completion, reference, **fields):\n    return 1.0\n"
    (tmp_path / "operator_rewards_xyz.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UnknownName, match="loaded by the operator"):
        TASKS.get_item("operator_rewards_xyz:score", import_references=False)
    with pytest.raises(UnknownName):
        TASKS.get_item("os:system", import_references=False)
    assert "operator_rewards_xyz:score" in load_plugins(["operator_rewards_xyz:score"])
    assert TASKS.get_item("operator_rewards_xyz:score", import_references=False)("a", "b") == 1.0


def test_a_plugin_that_cannot_be_imported_is_named() -> None:
    with pytest.raises(PluginError, match="'no_such_rewards_module'"):
        load_plugins(["no_such_rewards_module"])
    with pytest.raises(PluginError, match="has no 'missing'"):
        load_plugins(["json:missing"])
