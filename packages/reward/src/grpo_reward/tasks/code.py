"""The `code` task: run the completion's program against the row's tests in the sandbox.

    reward = tests_passed = passed / len(tests)        compiled = 1 if the program compiles, else 0

The program is the last fenced code block of the completion tagged python (``` python/py/python3), else
the last fenced block of any kind. `tests` (a list, or that list as a JSON string) holds assert-style
strings (`"assert add(2, 3) == 5"`, run in the program's namespace) and/or stdin/stdout pairs
(`{"input": "2 3\\n", "output": "5\\n"}`, compared line by line with trailing whitespace and blank lines
ignored). Optional field `time_limit_s` is the per-test limit (default 1 s, at most 10).
All tests run in one sandboxed process (see grpo_reward.code_sandbox.harness), so an item costs one sandbox
start whatever its number of tests; the worker's per-item time limit still bounds the whole item.
"""

from __future__ import annotations

import json
import logging
import math
import re
import secrets
from dataclasses import replace
from pathlib import Path
from typing import Any

from grpo_common.sandbox.limits import DEFAULT_SANDBOX_LIMITS
from grpo_common.sandbox.probe import probe_isolation
from grpo_common.sandbox.runner import RunResult, SandboxError

from grpo_reward.code_sandbox.policy import code_sandbox, unsafe_opt_in
from grpo_reward.tasks.contract import TASKS, TaskScore

logger = logging.getLogger(__name__)

HARNESS = Path(__file__).parents[1] / "code_sandbox" / "harness.py"
MAX_PROGRAM_CHARS = 100_000
MAX_TESTS = 256
DEFAULT_TEST_TIME_S = 1.0
MAX_TEST_TIME_S = 10.0
_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)^[ \t]*```", re.DOTALL | re.MULTILINE)
_PYTHON_TAGS = {"python", "py", "python3"}


class InvalidTests(ValueError):
    """The row's `tests` field is not a list of assert strings and {"input", "output"} pairs."""


def extract_program(completion: str) -> str | None:
    """The last python-tagged fenced block, else the last fenced block; None when there is none."""
    blocks = [(match.group(1).lower(), match.group(2)) for match in _FENCE.finditer(completion)]
    if not blocks:
        return None
    python = [body for tag, body in blocks if tag in _PYTHON_TAGS]
    return python[-1] if python else blocks[-1][1]


def parse_tests(raw: Any) -> list[dict[str, str]]:
    """The harness's test list from the row's field; InvalidTests says what is wrong."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as error:
            raise InvalidTests(f"tests is a string but not JSON ({error})") from None
    if not isinstance(raw, list) or not raw:
        raise InvalidTests("tests must be a non-empty list of assert strings or {input, output} objects")
    if len(raw) > MAX_TESTS:
        raise InvalidTests(f"tests has {len(raw)} entries, more than {MAX_TESTS}")
    tests = []
    for number, test in enumerate(raw):
        if isinstance(test, str):
            tests.append({"kind": "assert", "code": test})
        elif (
            isinstance(test, dict)
            and isinstance(test.get("input"), str)
            and isinstance(test.get("output"), str)
        ):
            tests.append({"kind": "io", "input": test["input"], "output": test["output"]})
        else:
            raise InvalidTests(f"tests[{number}] is neither an assert string nor {{input: str, output: str}}")
    return tests


def same_output(actual: str, expected: str) -> bool:
    """Equal line by line, ignoring trailing whitespace on each line and blank lines at either end."""

    def lines(text: str) -> list[str]:
        return [line.rstrip() for line in text.strip("\n").splitlines()]

    return lines(actual.strip()) == lines(expected.strip())


def compiles(program: str) -> bool:
    """Whether the program is valid Python (compiled here, never run here)."""
    try:
        compile(program, "solution.py", "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return False
    return True


def _time_limit(fields: dict[str, Any]) -> float:
    value = fields.get("time_limit_s", DEFAULT_TEST_TIME_S)
    if not isinstance(value, int | float) or not 0 < value <= MAX_TEST_TIME_S:
        raise InvalidTests(f"time_limit_s must be a number in (0, {MAX_TEST_TIME_S}], got {value!r}")
    return float(value)


def _verdicts(result: RunResult, nonce: str) -> dict[int, dict[str, Any]]:
    """The harness's per-test lines, keyed by test index (lines without the nonce are the program's)."""
    found: dict[int, dict[str, Any]] = {}
    for line in result.stdout.splitlines():
        if line.startswith(nonce + " "):
            try:
                verdict = json.loads(line[len(nonce) + 1 :])
                found[int(verdict["i"])] = verdict
            except (ValueError, KeyError, TypeError):
                continue
    return found


def _failure(reason: str, compiled: float = 0.0) -> TaskScore:
    return TaskScore(reward=0.0, components={"tests_passed": 0.0, "compiled": compiled}, reason=reason)


@TASKS.register("code")
def score(completion: str, reference: str, **fields: Any) -> TaskScore:
    """Fraction of the row's `tests` the completion's program passes, run in the sandbox."""
    del reference  # a reference solution is not needed: the tests are the reference
    try:
        tests = parse_tests(fields.get("tests"))
        time_limit_s = _time_limit(fields)
    except InvalidTests as error:
        return _failure(f"invalid tests: {error}")
    program = extract_program(completion)
    if program is None:
        return _failure("no fenced code block")
    if len(program) > MAX_PROGRAM_CHARS:
        return _failure(f"program longer than {MAX_PROGRAM_CHARS} characters")
    if not compiles(program):
        return TaskScore(
            0.0, components={"tests_passed": 0.0, "compiled": 0.0}, reason="syntax error", extracted=program
        )
    budget = time_limit_s * len(tests)
    limits = replace(DEFAULT_SANDBOX_LIMITS, wall_s=budget + 2.0, cpu_s=math.ceil(budget) + 1)
    sandbox = code_sandbox(probe_isolation(), allow_unsafe=unsafe_opt_in(), limits=limits)
    if isinstance(sandbox, str):
        return _failure(sandbox, compiled=1.0)
    nonce = secrets.token_hex(16)
    job = {"nonce": nonce, "tests": [{k: v for k, v in t.items() if k != "output"} for t in tests]}
    job |= {"time_limit_s": time_limit_s, "output_bytes": sandbox.limits.output_bytes}
    try:
        result = sandbox.run(
            {"solution.py": program, "harness.py": HARNESS.read_text()},
            ["harness.py"],
            json.dumps(job).encode(),
        )
    except SandboxError as error:
        logger.error("code sandbox failed: %s", error)
        return _failure(f"sandbox error: {error}", compiled=1.0)
    verdicts = _verdicts(result, nonce)
    passed = 0
    first_failure = ""
    for number, test in enumerate(tests):
        verdict = verdicts.get(number)
        if verdict is None:
            ok, why = False, f"did not finish ({result.describe()})"
        elif test["kind"] == "io" and verdict["ok"]:
            ok, why = same_output(str(verdict["out"]), test["output"]), "wrong output"
        else:
            ok, why = bool(verdict["ok"]), str(verdict["error"])
        passed += ok
        if not ok and not first_failure:
            first_failure = f"test {number}: {why}"
    fraction = passed / len(tests)
    reason = f"passed {passed}/{len(tests)} tests" + (
        f"; first failure: {first_failure}" if first_failure else ""
    )
    return TaskScore(
        reward=fraction,
        components={"tests_passed": fraction, "compiled": 1.0},
        reason=reason,
        extracted=program,
    )


# its own worker lane (grpo_reward.pool): programs that run for seconds never hold cheap items in a queue
score.lane = "code"  # type: ignore[attr-defined]
