"""The `code` task against programs that try to pass tests they do not solve: each forgery must fail.

The untrusted interpreter reports values (as plain data) and outputs; the service holds the expected values
and decides. Also: which assert forms are supported, and the plain-data decoding the verdict relies on.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from grpo_reward.code_sandbox.asserts import UnsupportedTest, parse_assert_test
from grpo_reward.code_sandbox.plain_data import NotPlainData, decode
from grpo_reward.tasks import TASKS, TaskScore

WRONG_ADD = "def add(a, b):\n    return 0\n"
FORGERIES = {
    "eq_always_true": """
        class Anything:
            def __eq__(self, other):
                return True
            __hash__ = object.__hash__
        def add(a, b):
            return Anything()
        """,
    "replaced_exec_and_eval": """
        import builtins
        builtins.exec = lambda *args, **kwargs: None
        builtins.eval = lambda *args, **kwargs: True
        """,
    "patched_os_write": """
        import os
        _write = os.write
        def write(fd, data):
            data = data.replace(b'"ok": false', b'"ok": true').replace(b'"values": [0]', b'"values": [true]')
            return _write(fd, data)
        os.write = write
        """,
    "patched_json_dumps": """
        import json
        _dumps = json.dumps
        def dumps(value, **options):
            if isinstance(value, dict) and "ok" in value:
                value = {**value, "ok": True, "error": "", "values": [True]}
            return _dumps(value, **options)
        json.dumps = dumps
        """,
    "nonce_from_the_harness_frame": """
        import json, os, sys
        frame = sys._getframe()
        while "nonce" not in frame.f_locals:
            frame = frame.f_back
        nonce = frame.f_locals["nonce"]
        for number in range(3):
            line = json.dumps({"i": number, "ok": True, "out": "", "error": "", "values": [True]})
            os.write(1, f"\\n{nonce} {line}\\n".encode())
        os._exit(0)
        """,
}


def code(program: str, tests: list[object]) -> TaskScore:
    return TASKS["code"](f"```python\n{textwrap.dedent(program)}```", "", tests=tests)


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_a_forged_assert_does_not_pass(forgery: str) -> None:
    program = (
        FORGERIES[forgery] if forgery == "eq_always_true" else WRONG_ADD + textwrap.dedent(FORGERIES[forgery])
    )
    result = code(program, ["assert add(2, 3) == 5"])
    assert result.reward == 0.0, result.reason


def test_the_expected_output_cannot_be_read_from_the_dataset_on_disk() -> None:
    dataset = Path(__file__).resolve().parent / ".sandbox-dataset.jsonl"
    dataset.write_text(json.dumps({"input": "7\n", "output": "a secret 7919\n"}) + "\n")
    program = f"""
        import json
        try:
            print(json.loads(open({str(dataset)!r}).readline())["output"])
        except OSError as error:
            print("unreadable", error.errno)
        """
    try:
        result = code(program, [{"input": "7\n", "output": "a secret 7919\n"}])
    finally:
        dataset.unlink()
    assert result.reward == 0.0 and "wrong output" in result.reason


def test_a_correct_program_passes_every_supported_form() -> None:
    program = """
        import math
        def add(a, b):
            return a + b
        def pair(x):
            return (x, [x], {x: {x}})
        """
    tests = [
        "assert add(2, 3) == 5",
        "assert 5 == add(2, 3)",
        "assert add(2, 3) != 6, 'message ignored'",
        "assert add(1, 1) < 3\nassert add(1, 1) >= 2",
        "assert add('a', 'b') in ['ab', 'ba']",
        "assert 'a' in add('a', 'b')",
        "assert pair(1) == (1, [1], {1: {1}})",
        "assert add(0, 0) is not None",
        "assert add(1, 0)",
        "assert not add(0, 0)",
        "assert math.isclose(add(0.1, 0.2), 0.3)",
        "assert isclose(0.3, add(0.1, 0.2), rel_tol=1e-9)",
        "assert add(b'x', b'y') == b'xy'",
    ]
    result = code(program, tests)
    assert result.reward == 1.0, result.reason


def test_a_tuple_is_not_a_list_and_a_value_that_is_not_plain_data_fails() -> None:
    program = """
        import fractions
        def pair():
            return [1, 2]
        def half():
            return fractions.Fraction(1, 2)
        """
    result = code(program, ["assert pair() == (1, 2)", "assert half() == 0.5"])
    assert result.reward == 0.0
    assert "got [1, 2]" in result.reason


@pytest.mark.parametrize(
    ("test", "why"),
    [
        ("assert add(1, 2) == add(2, 1)", "both sides are expressions"),
        ("assert add(1, 2) == 3 and add(0, 0) == 0", "`and`/`or`"),
        ("assert 1 < add(1, 1) < 3", "chained"),
        ("assert add(1, 2) is 3", "`is` compares only"),
        ("x = add(1, 2)\nassert x == 3", "only assert statements"),
        ("assert math.isclose(add(1, 2), x)", "isclose needs a number literal"),
        ("print(", "not valid Python"),
    ],
)
def test_unsupported_assert_forms_are_refused_naming_the_form(test: str, why: str) -> None:
    with pytest.raises(UnsupportedTest, match=why.replace("(", r"\(")):
        parse_assert_test(test)
    result = code("def add(a, b):\n    return a + b\n", [test])
    assert result.reason.startswith("invalid tests: tests[0] is not a supported assert")


def test_the_expected_literal_never_enters_the_sandbox() -> None:
    (check,) = parse_assert_test("assert add(2, 3) == 7919")
    assert (check.expression, check.relation, check.expected) == ("add(2, 3)", "==", 7919)
    assert "7919" not in check.expression


def test_plain_data_decodes_to_exact_builtins_and_refuses_anything_else() -> None:
    value = decode({"tuple": [1, {"list": ["a", None]}, {"dict": [[{"frozenset": [2]}, {"bytes": "ff"}]]}]})
    assert value == (1, ["a", None], {frozenset({2}): b"\xff"})
    for bad in ({"object": []}, {"list": [1], "tuple": [2]}, {"set": [{"list": []}]}, [1, 2], {"bytes": 1}):
        with pytest.raises(NotPlainData):
            decode(bad)
