"""The python environment with a real sandbox: output, errors, limits, and refusal without isolation."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from grpo_common.sandbox import SandboxLimits
from grpo_common.sandbox.probe import PRIVILEGE_PROBE, IsolationStatus
from grpo_common.sandbox.runner import live_sandbox_owners, sandbox_pids
from grpo_common.sandbox.slots import SandboxSlotsConfig, service_slots_installed
from grpo_rollout.environments import ENVIRONMENTS, EpisodeStart, ModelTurn, StepResult, python_tool
from grpo_rollout.environments.python_tool import ALLOW_UNSAFE_ENV, PythonEnvironment, python_sandbox

START = EpisodeStart("p0", "What is 2**100?", (1, 2), "1267650600228229401496703205376", {}, 0)


def call(environment: PythonEnvironment, code: str) -> StepResult:
    text = f"Let me run it.<python>{code}</python>"
    turn = ModelTurn(token_ids=(1,), text=text, index=0, stop_string="</python>")
    return environment.step(environment.reset(START), turn)


@pytest.fixture(scope="module")
def python_env() -> PythonEnvironment:
    environment = ENVIRONMENTS.get_item("python", import_references=False)({"time_limit_s": 2})
    assert isinstance(environment, PythonEnvironment)
    return environment


def test_what_the_program_prints_is_the_observation(python_env: PythonEnvironment) -> None:
    result = call(python_env, "print(2**100)\nprint('done')")
    assert result.observation == "<output>1267650600228229401496703205376\ndone\n</output>"
    assert (result.done, result.tool_calls, result.tool_errors) == (False, 1, 0)
    assert python_env.stop_strings == ("</python>",)


def test_an_exception_is_an_error_with_its_traceback_tail(python_env: PythonEnvironment) -> None:
    result = call(python_env, "x = 1\nraise ValueError('bad value')")
    assert result.observation.startswith("<output>error: exit code 1: ")
    assert "ValueError: bad value</output>" in result.observation
    assert result.tool_errors == 1 and not result.done


def test_an_infinite_loop_is_killed_at_its_cpu_time_limit() -> None:
    result = call(PythonEnvironment({"time_limit_s": 0.5}), "while True:\n    pass")
    assert result.observation == "<output>error: CPU time limit of 0.5 s exceeded (killed)</output>"
    assert result.tool_errors == 1


def test_the_network_is_refused(python_env: PythonEnvironment) -> None:
    code = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', 22), timeout=1)\n"
        "    print('connected')\n"
        "except OSError as error:\n"
        "    print('refused', type(error).__name__)\n"
        "print(sorted(socket.if_nameindex()))\n"
    )
    result = call(python_env, code)
    assert "connected" not in result.observation
    assert result.observation.startswith("<output>refused"), result.observation
    assert "eth" not in result.observation  # only the (down) loopback of its own namespace


def test_a_fork_bomb_is_contained(python_env: PythonEnvironment) -> None:
    code = (
        "import os\n"
        "children = 0\n"
        "for _ in range(1000):\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            import time; time.sleep(30)\n"
        "        children += 1\n"
        "    except OSError:\n"
        "        break\n"
        "print('children', children)\n"
    )
    result = call(python_env, code)
    assert result.observation.startswith("<output>children ")
    assert int(result.observation.split()[1].removesuffix("</output>")) < 32  # RLIMIT_NPROC
    assert sandbox_pids() == []  # every child died with the run
    assert call(python_env, "print('still works')").observation == "<output>still works\n</output>"


def test_output_is_cut_at_the_cap() -> None:
    environment = PythonEnvironment({"max_output_chars": 50})
    result = call(environment, "print('x' * 100)")
    assert result.observation == "<output>" + "x" * 50 + "[truncated]</output>"
    flood = call(environment, "while True:\n    print('y' * 1000)")  # killed at 64 KiB, not at the clock
    assert flood.observation == "<output>" + "y" * 50 + "[truncated]</output>"


def test_concurrent_calls_run_under_their_own_uid_and_do_not_share_a_process_cap() -> None:
    """Episodes call the tool from several threads: a fork bomb in one must not starve another's forks."""
    environment = PythonEnvironment({"time_limit_s": 3})
    bomb = (
        "import os, time\n"
        "end, refused = time.monotonic() + 2.5, 0\n"
        "while time.monotonic() < end:\n"
        "    try:\n"
        "        os.fork() or time.sleep(10)\n"
        "    except OSError:\n"
        "        refused += 1\n"
        "        time.sleep(0.05)\n"
        "print('capped', refused > 0)\n"
    )
    results: dict[str, StepResult] = {}
    bomber = threading.Thread(target=lambda: results.setdefault("bomb", call(environment, bomb)))
    bomber.start()
    time.sleep(0.8)  # the bomb holds its 32 processes by now
    child = (
        "import subprocess, sys\n"
        "run = subprocess.run([sys.executable, '-c', 'print(7)'], capture_output=True)\n"
        "print(run.stdout.decode().strip())"
    )
    results["other"] = call(environment, child)
    bomber.join()
    assert results["other"].observation == "<output>7\n</output>", results["other"].observation
    assert results["bomb"].observation == "<output>capped True\n</output>"  # its own cap was hit


def test_a_long_program_is_refused_before_it_runs() -> None:
    environment = PythonEnvironment({"max_code_chars": 10})
    result = call(environment, "print('a long program')")
    assert result.observation == "<output>error: the program is 23 characters; the limit is 10</output>"


def test_without_isolation_it_is_refused_unless_the_operator_opts_in() -> None:
    missing = IsolationStatus(False, "unshare: operation not permitted")
    with pytest.raises(ValueError, match=f"python environment is refused: unshare.*{ALLOW_UNSAFE_ENV}=1"):
        python_sandbox(missing, allow_unsafe=False, limits=SandboxLimits())
    assert python_sandbox(missing, allow_unsafe=True, limits=SandboxLimits()).isolate is False
    assert python_sandbox(IsolationStatus(True, "ok"), allow_unsafe=False, limits=SandboxLimits()).isolate


def test_the_config_is_validated() -> None:
    with pytest.raises(ValueError, match="time_limit_s"):
        PythonEnvironment({"time_limit_s": 1000})
    with pytest.raises(ValueError, match="allow_unsafe"):
        PythonEnvironment({"allow_unsafe": True})  # a request cannot opt in; only the operator can


def test_a_setuid_binary_gains_no_privilege_and_the_host_is_invisible(python_env: PythonEnvironment) -> None:
    """`su` (setuid root here) runs with no capability and no_new_privs; the repository, this service's
    files and a data file next to the tests cannot be seen."""
    data = Path(__file__).resolve().parent / ".sandbox-rollout-data.jsonl"
    data.write_text('{"answer": "1267650600228229401496703205376"}\n')
    hidden = [str(data), str(Path(__file__).resolve().parents[3]), str(Path(python_tool.__file__).resolve())]
    program = PRIVILEGE_PROBE + (
        "\nseen = [privileges(status_of('self')), setuid_run('/usr/bin/su')]\n"
        "print(all(s['euid'] != 0 and s['cap_eff'] == s['cap_bnd'] == '0' * 16 and s['no_new_privs'] == '1'"
        " for s in seen))\n"
        f"print([path for path in {hidden!r} if os.path.exists(path)])\n"
    )
    try:
        result = call(python_env, program)
    finally:
        data.unlink()
    assert result.observation == "<output>True\n[]\n</output>", result.observation


def test_the_service_bound_makes_concurrent_calls_wait() -> None:
    """6 episodes call the tool at once under `sandbox.max_concurrent = 2`: never more than 2 programs
    run at the same time (counted from /proc), and every call still gets its answer."""
    environment = PythonEnvironment({"time_limit_s": 2})
    callers: set[int] = set()

    def sleeper() -> StepResult:
        callers.add(threading.get_native_id())
        return call(environment, "import time\ntime.sleep(0.4)\nprint('done')")

    with service_slots_installed(SandboxSlotsConfig(max_concurrent=2)), ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(sleeper) for _ in range(6)]
        most = 0
        while not all(future.done() for future in futures):
            most = max(most, len(live_sandbox_owners() & callers))
            time.sleep(0.01)
    assert [future.result().observation for future in futures] == ["<output>done\n</output>"] * 6
    assert 1 <= most <= 2, most
