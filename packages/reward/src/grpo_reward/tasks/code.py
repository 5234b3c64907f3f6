"""The `code` task: run the completion's program against the row's tests in the sandbox.

    reward = tests_passed = passed / len(tests)        compiled = 1 if the program compiles, else 0

The program is the last fenced code block of the completion tagged python (``` python/py/python3), else
the last fenced block of any kind. `tests` (a list, or that list as a JSON string) holds assert strings
(`"assert add(2, 3) == 5"`, in the forms `grpo_reward.code_sandbox.asserts` lists: the expression is
evaluated in the program's namespace inside the sandbox, its value comes back as plain data and is
compared here with the literal, which never enters the sandbox) and/or stdin/stdout pairs
(`{"input": "2 3\\n", "output": "5\\n"}`, compared here line by line with trailing whitespace and blank
lines ignored). Optional field `time_limit_s` is the per-test CPU-time limit (default 1 s, at most 10).
All tests run in one sandboxed process (see grpo_reward.code_sandbox.harness), so an item costs one sandbox
start whatever its number of tests. A run that reaches the sandbox's generous wall-clock backstop (only
a sleeping or starved program does) raises TaskTimedOut: the item is `timed_out`, never graded wrong.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from grpo_common.sandbox.limits import DEFAULT_SANDBOX_LIMITS
from grpo_common.sandbox.probe import probe_isolation
from grpo_common.sandbox.runner import RunResult, SandboxError

from grpo_reward.code_sandbox.asserts import Check, UnsupportedTest, parse_assert_test
from grpo_reward.code_sandbox.plain_data import NotPlainData, decode
from grpo_reward.code_sandbox.policy import code_sandbox, unsafe_opt_in
from grpo_reward.tasks.contract import TASKS, TaskScore, TaskTimedOut

logger = logging.getLogger(__name__)

HARNESS = Path(__file__).parents[1] / "code_sandbox" / "harness.py"
MAX_PROGRAM_CHARS = 100_000
MAX_TESTS = 256
DEFAULT_TEST_TIME_S = 1.0
MAX_TEST_TIME_S = 10.0
WALL_BACKSTOP_FACTOR = 10
"""The sandbox's wall clock is 10 x the tests' CPU budget + 2 s (as the worker pool's backstop): only a
program that sleeps, or a machine starved for minutes, reaches it."""
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


@dataclass(frozen=True)
class AssertTest:
    """An assert-test string split into its checks (expressions run inside, comparisons here)."""

    checks: list[Check]


@dataclass(frozen=True)
class IoTest:
    """A stdin/stdout pair: the input goes into the sandbox, the expected output stays here."""

    input: str
    output: str


Test = AssertTest | IoTest


def parse_tests(raw: Any) -> list[Test]:
    """The row's `tests` field as tests; InvalidTests says what is wrong (and which assert form)."""
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
            try:
                tests.append(AssertTest(parse_assert_test(test)))
            except UnsupportedTest as error:
                raise InvalidTests(f"tests[{number}] is not a supported assert: {error}") from None
        elif (
            isinstance(test, dict)
            and isinstance(test.get("input"), str)
            and isinstance(test.get("output"), str)
        ):
            tests.append(IoTest(test["input"], test["output"]))
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
            except (ValueError, KeyError, TypeError, RecursionError):
                continue
    return found


def _failure(reason: str, compiled: float = 0.0) -> TaskScore:
    return TaskScore(reward=0.0, components={"tests_passed": 0.0, "compiled": compiled}, reason=reason)


def _job(tests: list[Test], nonce: str, time_limit_s: float, output_bytes: int) -> dict[str, Any]:
    """What the harness reads: inputs and expressions only, never an expected value or output."""
    wire = [
        {"kind": "io", "input": test.input}
        if isinstance(test, IoTest)
        else {"kind": "assert", "expressions": [check.expression for check in test.checks]}
        for test in tests
    ]
    return {"nonce": nonce, "tests": wire, "time_limit_s": time_limit_s, "output_bytes": output_bytes}


def judge(test: Test, verdict: dict[str, Any] | None, result: RunResult) -> tuple[bool, str]:
    """Whether the program passed `test`, decided here from the harness's report; and why not."""
    if verdict is None:
        return False, f"did not finish ({result.describe()})"
    if not verdict.get("ok"):
        return False, str(verdict.get("error", "failed"))
    if isinstance(test, IoTest):
        return same_output(str(verdict.get("out", "")), test.output), "wrong output"
    values = verdict.get("values")
    if not isinstance(values, list) or len(values) != len(test.checks):
        return False, "no value reported"
    for check, encoded in zip(test.checks, values, strict=True):
        try:
            value = decode(encoded)
        except NotPlainData as error:
            return False, f"{check.expression} gave no plain data ({error})"
        if not check.passes(value):
            return False, f"assertion failed: {check.source} (got {value!r:.80})"
    return True, ""


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
    limits = replace(DEFAULT_SANDBOX_LIMITS, cpu_s=budget + 0.5, wall_s=WALL_BACKSTOP_FACTOR * budget + 2.0)
    sandbox = code_sandbox(probe_isolation(), allow_unsafe=unsafe_opt_in(), limits=limits)
    if isinstance(sandbox, str):
        return _failure(sandbox, compiled=1.0)
    nonce = secrets.token_hex(16)
    job = _job(tests, nonce, time_limit_s, sandbox.limits.output_bytes)
    try:
        result = sandbox.run(
            {"solution.py": program, "harness.py": HARNESS.read_text()},
            ["harness.py"],
            json.dumps(job).encode(),
        )
    except SandboxError as error:
        logger.error("code sandbox failed: %s", error)
        return _failure(f"sandbox error: {error}", compiled=1.0)
    if result.timed_out:
        raise TaskTimedOut(f"the program ran past the sandbox's {limits.wall_s:g} s wall-clock backstop")
    verdicts = _verdicts(result, nonce)
    passed = 0
    first_failure = ""
    for number, test in enumerate(tests):
        ok, why = judge(test, verdicts.get(number), result)
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
