"""The `code` task in real processes: a real `grpo-reward serve` grades hostile programs through its
worker pool and keeps serving; a worker-like process takes its sandbox down when it is killed; the
service probes the sandbox at start-up and accepts the operator's unsafe flag."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpo.v1 import reward_pb2, reward_pb2_grpc
from grpo_common.sandbox.runner import live_sandbox_owners, sandbox_pids
from reward_fixtures import reward_server

SECRET = "hunter2-service-secret"
WORKER = """
import json, sys
from grpo_reward.worker import run_task
for line in sys.stdin:
    item = json.loads(line)
    verdict = run_task("code", item["completion"], "", item["fields"])
    print(json.dumps({"reward": verdict.reward, "reason": verdict.reason}), flush=True)
"""


@pytest.fixture()
def worker() -> Iterator[subprocess.Popen[str]]:
    environment = {**os.environ, "GRPO_TEST_SECRET": SECRET}
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
    )
    yield process
    process.kill()
    process.wait()


def ask(worker: subprocess.Popen[str], program: str, tests: list[object]) -> dict[str, object]:
    assert worker.stdin and worker.stdout
    item = {"completion": f"```python\n{program}\n```", "fields": {"tests": tests, "time_limit_s": 0.5}}
    worker.stdin.write(json.dumps(item) + "\n")
    worker.stdin.flush()
    return json.loads(worker.stdout.readline())


def test_hostile_programs_cost_their_item_and_the_worker_keeps_serving(worker: subprocess.Popen[str]) -> None:
    hostile = {
        "fork bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        "infinite loop": "while True:\n    pass",
        "10 GB": "x = bytearray(10 * 1024**3)",
        "os.system": "import os\nassert os.system('echo hi > /etc/grpo-escape') == 0",
    }
    for name, program in hostile.items():
        answer = ask(worker, program, ["assert True"])
        assert answer["reward"] == 0.0, f"{name}: {answer}"
        assert worker.poll() is None, f"{name} took the worker down"
    leaked = ask(
        worker, "import os\nprint(sorted(os.environ.values()))", [{"input": "", "output": f"['{SECRET}']"}]
    )
    assert leaked["reward"] == 0.0 and "wrong output" in str(leaked["reason"])
    assert ask(worker, "print(input()[::-1])", [{"input": "abc", "output": "cba"}])["reward"] == 1.0
    assert not Path("/etc/grpo-escape").exists() and sandbox_pids(worker.pid) == []


def test_killing_the_worker_kills_its_sandbox(worker: subprocess.Popen[str]) -> None:
    assert worker.stdin
    item = {
        "completion": "```python\nimport os, time\nos.fork()\ntime.sleep(60)\n```",
        "fields": {"tests": ["assert True"], "time_limit_s": 10},  # a long wall clock: the kill is ours
    }
    worker.stdin.write(json.dumps(item) + "\n")
    worker.stdin.flush()
    deadline = time.monotonic() + 30
    while len(sandbox_pids(worker.pid)) < 2:
        assert time.monotonic() < deadline, "the sandboxed program never started"
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    deadline = time.monotonic() + 5
    while sandbox_pids(worker.pid):
        assert time.monotonic() < deadline, "the sandbox outlived its worker"
        time.sleep(0.05)


def _descendants(root: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        try:
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (ValueError, OSError, IndexError):
            continue
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def test_the_service_probes_the_sandbox_at_start_up_and_bounds_concurrent_sandboxes() -> None:
    """`--max-sandboxes 1` with 3 workers: 4 code items that each sleep 0.4 s are graded, never more than
    one sandbox of this service running at a time (counted from /proc); the unsafe flag is accepted."""
    command = [sys.executable, "-m", "grpo_reward.cli", "serve", "--port", "0", "--workers", "3"]
    command += ["--max-sandboxes", "1", "--allow-unsafe-code", "--log-level", "INFO"]
    environment = {**os.environ, "GRPO_TEST_SECRET": SECRET}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment
    )
    lines: list[str] = []
    assert process.stdout
    threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True).start()
    try:
        deadline = time.monotonic() + 120
        while not any("serving on" in line for line in lines):
            assert process.poll() is None, f"grpo-reward serve exited: {lines}"
            assert time.monotonic() < deadline, "grpo-reward serve did not report its port"
            time.sleep(0.05)
        assert any("code sandbox: network, PID and mount namespaces" in line for line in lines), lines
        assert any("at most 1 sandboxed programs run at once" in line for line in lines), lines
        address = next(line for line in lines if "serving on" in line).split("serving on ")[1].strip()
        sleeper = "```python\nimport time\ntime.sleep(0.4)\nDONE = 1\n```"
        fields = json.dumps({"tests": ["assert DONE == 1"]})
        items = [
            reward_pb2.ScoreItem(
                id=str(n), task="code", completion=sleeper, fields_json=fields, reference="-"
            )
            for n in range(4)
        ]
        items.append(reward_pb2.ScoreItem(id="m", completion=r"\boxed{4}", reference="4"))
        request = reward_pb2.ScoreRequest(items=items, spec=reward_pb2.RewardSpec(timeout_s=10))
        with grpc.insecure_channel(address) as channel:
            call = reward_pb2_grpc.RewardServiceStub(channel).Score.future(request)
            most = 0
            while not call.done():
                workers = _descendants(process.pid)
                most = max(most, len(live_sandbox_owners() & workers))
                time.sleep(0.01)
            results = call.result().results
        assert [result.reward for result in results] == [1.0] * 5, [result.reason for result in results]
        assert most == 1, most
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


HOSTILE_PROGRAMS = {
    "fork_bomb": "import os\nwhile True:\n    os.fork()",
    "spin": "while True:\n    pass",
    "allocate": "x = bytearray(10 * 1024**3)",
    "environment": "import os\nassert 'GRPO_TEST_SECRET' in os.environ",
    "socket": "import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=1)",
}
# Programs whose harm would show outside the sandbox: they may "pass", their effects must not happen.
MARKER = Path(__file__).resolve().parent / ".sandbox-escape-marker"
VICTIM = Path(__file__).resolve().parent / ".sandbox-victim"
ESCAPES = {
    "os_system_writes": f"import os\nos.system('touch {MARKER}')\nopen('{MARKER}', 'w').write('x')",
    "deletes": f"import os, shutil\nos.system('rm -f {VICTIM}')\nos.remove('{VICTIM}')",
}


def test_a_real_reward_service_grades_hostile_programs_through_its_workers_and_keeps_serving() -> None:
    environment = {"GRPO_TEST_SECRET": SECRET}
    MARKER.unlink(missing_ok=True)
    VICTIM.write_text("must survive")
    server = reward_server(["--workers", "2", "--log-level", "WARNING"], environment)
    try:
        with server as address, grpc.insecure_channel(address) as channel:
            stub = reward_pb2_grpc.RewardServiceStub(channel)
            fields = json.dumps({"tests": ["assert True"], "time_limit_s": 0.5})
            items = [
                reward_pb2.ScoreItem(
                    id=name,
                    task="code",
                    completion=f"```python\n{program}\n```",
                    fields_json=fields,
                    reference="-",
                )
                for name, program in {**HOSTILE_PROGRAMS, **ESCAPES}.items()
            ]
            good = "```python\ndef add(a, b):\n    return a + b\n```"
            items.append(
                reward_pb2.ScoreItem(
                    id="good",
                    task="code",
                    completion=good,
                    reference="-",
                    fields_json=json.dumps({"tests": ["assert add(2, 3) == 5", "assert add(1, 1) == 3"]}),
                )
            )
            spec = reward_pb2.RewardSpec(timeout_s=10)
            results = {r.id: r for r in stub.Score(reward_pb2.ScoreRequest(items=items, spec=spec)).results}
            for name in HOSTILE_PROGRAMS:  # contained: no hostile program passes its (trivial) test
                assert results[name].reward == 0.0, (name, results[name].reason)
            assert results["good"].components["tests_passed"] == 0.5, results["good"].reason
            assert results["good"].components["compiled"] == 1.0
            math_item = reward_pb2.ScoreItem(id="m", completion=r"\boxed{4}", reference="4")
            after = stub.Score(reward_pb2.ScoreRequest(items=[math_item]), timeout=60).results[0]
            assert after.correct  # the service is unharmed
        assert not MARKER.exists(), "a sandboxed program wrote outside its directory"
        assert VICTIM.read_text() == "must survive", "a sandboxed program deleted a file outside"
    finally:
        MARKER.unlink(missing_ok=True)
        VICTIM.unlink(missing_ok=True)
