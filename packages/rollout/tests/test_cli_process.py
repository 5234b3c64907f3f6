"""`grpo-rollout serve` as a real process on loopback: start-up, a scored round trip, an update, shutdown."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpo.v1 import rollout_pb2, rollout_pb2_grpc
from grpo_common.weights.codec import encode_state_dict
from grpo_rollout.cli import main
from rollout_reward_standin import RewardStandin
from rollout_service_harness import request, token_prompt
from rollout_testkit import other_weights

STARTUP_TIMEOUT_S = 180  # importing torch + transformers on a loaded 2-core box is slow


def wait_for_address(process: subprocess.Popen[str]) -> str:
    """The CLI prints `grpo-rollout serving on HOST:PORT` once it accepts calls (also with --port 0)."""
    found: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            match = re.search(r"grpo-rollout serving on (\S+)", line)
            if match:
                found.append(match.group(1))
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(STARTUP_TIMEOUT_S)
    if not found:
        process.kill()
        raise AssertionError(f"no address printed; stderr: {process.stderr.read() if process.stderr else ''}")
    return found[0]


def test_serve_process_generates_scored_groups_updates_and_stops_cleanly(tiny_model_dir: Path) -> None:
    reward = RewardStandin().start()
    env = {**os.environ, "GRPO_ROLLOUT_LIMITS__BATCH_PROMPTS": "2"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "grpo_rollout.cli",
            "serve",
            "--model",
            str(tiny_model_dir),
            "--reward-address",
            reward.address,
            "--port",
            "0",
            "--torch-threads",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        address = wait_for_address(process)

        async def scenario():
            async with grpc.aio.insecure_channel(address) as channel:
                stub = rollout_pb2_grpc.RolloutServiceStub(channel)
                health = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service="grpo.v1.RolloutService"), timeout=10
                )
                prompts = [token_prompt(f"p{i}", [1, 5 + i], reference="7") for i in range(3)]
                groups = [g async for g in stub.Generate(request(prompts, group_size=2, seed=1), timeout=60)]
                weights = other_weights(tiny_model_dir, seed=3)
                answer = await stub.UpdateWeights(encode_state_dict(weights, 1), timeout=60)
                after = [g async for g in stub.Generate(request(prompts[:1], temperature=0.0), timeout=60)]
                info = await stub.GetInfo(rollout_pb2.GetInfoRequest(), timeout=10)
                return health, groups, answer, after, info

        health, groups, answer, after, info = asyncio.run(scenario())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        assert sorted(g.prompt_id for g in groups) == ["p0", "p1", "p2"]
        assert all(len(g.completions) == 2 and g.policy_version == 0 for g in groups)
        # Batches of 2 prompts (set through the environment), each scored in one call; then the 3rd Generate.
        assert sorted(len(r.items) for r in reward.requests[:2]) == [2, 4] and len(reward.requests) == 3
        assert answer.policy_version == 1 and after[0].policy_version == 1
        assert (info.backend, info.policy_version) == ("hf", 1)

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reward.stop()


def test_cli_refuses_a_bad_configuration_before_loading_anything(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--model", "m", "--reward-address", "r:1", "--port", "70000"]) == 2
    assert "server.port" in capsys.readouterr().err
    assert main(["serve", "--model", "m"]) == 2
    assert "reward" in capsys.readouterr().err
    assert main(["serve", "--model", "m", "--reward-address", "reward-host"]) == 2
    assert "reward.address: Value error, 'reward-host' has no ':port'" in capsys.readouterr().err
    assert main(["serve", "--model", "/no/such/model", "--reward-address", "r:1"]) == 2
    assert "model '/no/such/model': no such directory" in capsys.readouterr().err
