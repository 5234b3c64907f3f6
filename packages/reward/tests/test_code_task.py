"""The `code` task through the task registry: ordinary programs, hostile programs, and the opt-in policy."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from grpo_common.sandbox.probe import PRIVILEGE_PROBE, IsolationStatus
from grpo_common.sandbox.runner import sandbox_pids
from grpo_reward.code_sandbox.policy import code_sandbox, unsafe_opt_in
from grpo_reward.tasks import TASKS, TaskScore, TaskTimedOut
from grpo_reward.tasks.code import extract_program
from grpo_reward.worker import run_task

ADD = "def add(a, b):\n    return a + b\n"
ADD_TESTS = ["assert add(2, 3) == 5", "assert add(-1, 1) == 0", "assert add('a', 'b') == 'ab'"]


def code(completion_program: str, tests: list[object], **fields: object) -> TaskScore:
    completion = f"Here is my solution.\n```python\n{completion_program}```\nDone."
    return TASKS["code"](completion, "", tests=tests, **fields)


def test_all_tests_pass() -> None:
    result = code(ADD, ADD_TESTS)
    assert (result.reward, dict(result.components)) == (1.0, {"tests_passed": 1.0, "compiled": 1.0})
    assert result.reason == "passed 3/3 tests"


def test_some_tests_pass_and_the_reason_names_the_first_failure() -> None:
    result = code("def add(a, b):\n    return int(a) + int(b)\n", ADD_TESTS)
    assert result.reward == pytest.approx(2 / 3)
    assert result.components["tests_passed"] == pytest.approx(2 / 3)
    assert "test 2: ValueError" in result.reason


def test_stdin_stdout_pairs_are_compared_by_the_service() -> None:
    program = "a, b = map(int, input().split())\nprint(a + b)   \n"
    tests = [
        {"input": "2 3\n", "output": "5\n"},
        {"input": "1 1", "output": "2"},
        {"input": "1 2", "output": "4"},
    ]
    result = code(program, tests)
    assert result.reward == pytest.approx(2 / 3) and "test 2: wrong output" in result.reason


def test_a_program_may_call_exit_and_read_stdin_through_sys() -> None:
    program = "import sys\nn = int(sys.stdin.readline())\nprint(n * 2)\nexit(0)\nprint('not reached')\n"
    assert code(program, [{"input": "21\n", "output": "42"}]).reward == 1.0


def test_a_json_string_of_tests_is_accepted() -> None:
    assert code(ADD, '["assert add(1, 2) == 3"]').reward == 1.0  # type: ignore[arg-type]


def test_a_syntax_error_gets_no_credit_and_compiled_zero() -> None:
    result = code("def add(a, b)\n    return a + b\n", ADD_TESTS)
    assert (result.reward, result.components["compiled"], result.reason) == (0.0, 0.0, "syntax error")


def test_no_code_block() -> None:
    result = TASKS["code"]("the answer is add(a, b) = a + b", "", tests=ADD_TESTS)
    assert (result.reward, result.reason) == (0.0, "no fenced code block")


def test_the_last_python_block_is_the_program() -> None:
    text = "```python\nfirst\n```\n```python\nsecond\n```\n```text\nthird\n```"
    assert extract_program(text) == "second\n"
    assert extract_program("```\nonly\n```") == "only\n"


def test_invalid_tests_are_reported() -> None:
    assert code(ADD, []).reason.startswith("invalid tests")
    assert code(ADD, [{"input": 1}]).reason.startswith("invalid tests: tests[0]")
    assert code(ADD, ADD_TESTS, time_limit_s=99).reason.startswith("invalid tests: time_limit_s")


def test_exiting_early_or_printing_fake_verdicts_passes_nothing() -> None:
    assert code("import os\nos._exit(0)\n", ["assert True"]).reward == 0.0
    verdict = json.dumps({"i": 0, "ok": True, "out": "", "error": ""})
    fake = f"for nonce in ('0', '', 'x'):\n    print(nonce, {verdict!r})\nraise SystemExit(0)\n"
    assert code(fake, ["assert False"]).reward == 0.0


# -- hostile programs: each contained, reported, and the test process unharmed ---------------------------


def test_fork_bomb() -> None:
    """Its forks starve the harness of CPU: a CPU-time failure, or (past the wall-clock backstop, on a
    loaded machine) a timed-out item; never a pass, and nothing left running."""
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    try:
        result = code(bomb, ["assert True"], time_limit_s=0.5)
        assert result.reward == 0.0 and ("time limit" in result.reason or "did not finish" in result.reason)
    except TaskTimedOut as timed_out:
        assert "wall-clock backstop" in str(timed_out)
    assert sandbox_pids() == []


def test_infinite_loop_fails_its_test_and_the_next_test_still_runs() -> None:
    program = "def f(x):\n    while x:\n        pass\n    return 1\n"
    result = code(program, ["assert f(1) == 1", "assert f(0) == 1"], time_limit_s=0.5)
    assert result.reward == 0.5 and "test 0: CPU time limit" in result.reason


def test_ten_gigabyte_allocation() -> None:
    result = code("x = bytearray(10 * 1024**3)\n", ["assert True"])
    assert result.reward == 0.0 and "MemoryError" in result.reason


def test_writing_and_deleting_outside_its_directory(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    program = f"import os, shutil\nshutil.rmtree({str(tmp_path)!r}, ignore_errors=True)\n"
    program += f"open({str(tmp_path / 'new.txt')!r}, 'w').write('x')\n"
    result = code(program, ["assert True"])
    assert result.reward == 0.0 and "FileNotFoundError" in result.reason  # its /tmp is a private tmpfs
    assert victim.read_text() == "keep me" and not (tmp_path / "new.txt").exists()


def test_reading_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRPO_TEST_SECRET", "hunter2-secret")
    program = "import os\nSEEN = repr(dict(os.environ))\n"
    result = code(program, ["assert 'hunter2' not in SEEN\nassert 'GRPO_TEST_SECRET' not in SEEN"])
    assert result.reward == 1.0, result.reason


def test_connecting_to_a_loopback_server() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(0.3)
        port = server.getsockname()[1]
        program = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        result = code(program, ["assert True"])
        with pytest.raises(TimeoutError):
            server.accept()
    assert result.reward == 0.0 and "Network is unreachable" in result.reason


def test_os_system_cannot_reach_out() -> None:
    program = "import os\nSTATUS = os.system('touch /etc/grpo-escape 2>/dev/null')\n"
    result = code(program, ["assert STATUS == 0"])
    assert result.reward == 0.0 and not Path("/etc/grpo-escape").exists()


# -- the operator's policy ------------------------------------------------------------------------------


def test_without_isolation_code_is_refused_unless_the_operator_opts_in() -> None:
    missing = IsolationStatus(False, "unshare: Operation not permitted")
    refusal = code_sandbox(missing, allow_unsafe=False)
    assert (
        isinstance(refusal, str) and "--allow-unsafe-code" in refusal and "Operation not permitted" in refusal
    )
    unsafe = code_sandbox(missing, allow_unsafe=True)
    assert not isinstance(unsafe, str) and unsafe.isolate is False
    isolated = code_sandbox(IsolationStatus(True, "ok"), allow_unsafe=False)
    assert not isinstance(isolated, str) and isolated.isolate is True


def test_the_opt_in_is_read_like_a_config_bool() -> None:
    assert unsafe_opt_in({"GRPO_REWARD_ALLOW_UNSAFE_CODE": "true"}) is True
    assert unsafe_opt_in({"GRPO_REWARD_ALLOW_UNSAFE_CODE": "0"}) is False
    assert unsafe_opt_in({"GRPO_REWARD_ALLOW_UNSAFE_CODE": "maybe"}) is False
    assert unsafe_opt_in({}) is False
    assert "GRPO_REWARD_ALLOW_UNSAFE_CODE" not in os.environ


# -- privileges, reads and load (issue 25) ---------------------------------------------------------------

PRIVILEGES = PRIVILEGE_PROBE + (
    "\nseen = [privileges(status_of('self')), setuid_run('/usr/bin/su')]\n"
    "print(all(s['euid'] != 0 and s['cap_eff'] == s['cap_bnd'] == '0' * 16 and s['no_new_privs'] == '1'"
    " for s in seen))\n"
)


def test_a_setuid_binary_gains_no_privilege_inside() -> None:
    assert code(PRIVILEGES, [{"input": "", "output": "True"}]).reward == 1.0


def test_a_burst_on_busy_cores_cannot_flip_correct_programs() -> None:
    """6 correct programs (about 0.3 s of CPU each here, 1 s limit) at once beside 4 spinners, each in a
    session of its own (so the scheduler's per-session groups share the cores ten ways): each program gets
    about a fifth of a core, so a wall-clock limit fails them; a CPU-time limit does not."""
    program = (
        "def work(n):\n    total = 0\n    for i in range(n):\n        total += i % 7\n    return total\n"
    )
    tests = ["assert work(4_000_000) == 11999994"]
    spin = [sys.executable, "-c", "while True: pass"]
    spinners = [subprocess.Popen(spin, start_new_session=True) for _ in range(4)]
    try:
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda _: code(program, tests), range(6)))
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    assert [result.reward for result in results] == [1.0] * 6, [result.reason for result in results]


def test_a_program_that_sleeps_past_the_backstop_is_timed_out_never_wrong() -> None:
    """A sleeping test spends no CPU: the wall-clock backstop (10 x 0.1 s + 2 s) ends it, and the worker
    reports the item as timed out, which says nothing about the answer."""
    completion = "```python\nimport time\ndef add(a, b):\n    time.sleep(60)\n```"
    verdict = run_task("code", completion, "", {"tests": ["assert add(2, 3) == 5"], "time_limit_s": 0.1})
    assert verdict.timed_out and "wall-clock backstop" in verdict.reason, verdict
    assert sandbox_pids() == []
