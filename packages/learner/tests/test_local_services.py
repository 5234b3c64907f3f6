"""Local services: work done while the reward service starts, no orphan when that work fails, and a
run a service refuses mid-way ending in a sentence."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import grpc
import pytest
import torch
from grpo.v1 import rollout_pb2, rollout_pb2_grpc
from grpo_learner.config import LocalServicesConfig
from grpo_learner.local.service_processes import local_services
from learner_fixtures import save_tiny_model

CONFIG = LocalServicesConfig(reward_workers=1, torch_threads=1, ready_timeout_s=120)


def processes_naming(text: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", text], capture_output=True, text=True).stdout.split()
    return [pid for pid in found if pid.strip()]


def test_the_rollout_serves_the_model_written_while_the_reward_service_started(tmp_path: Path) -> None:
    model = tmp_path / "model"
    seen: dict[str, bool] = {}

    def write_model() -> None:
        seen["reward launched first"] = (tmp_path / "services" / "reward.log").exists()
        seen["reward not waited for"] = not (tmp_path / "services" / "reward.port").exists()
        save_tiny_model(model)

    with local_services(
        str(model), tmp_path, CONFIG, max_staleness=1, while_reward_starts=write_model
    ) as services:
        reward, rollout = services
        with grpc.insecure_channel(rollout.address) as channel:
            stub = rollout_pb2_grpc.RolloutServiceStub(channel)
            info = stub.GetInfo(rollout_pb2.GetInfoRequest(), timeout=30)
        assert info.model == str(model)
        assert reward.process.poll() is None
        # the hf service said it computes here with the one thread it was given, and the phases
        # overlap (max_staleness 1): the learner took the rest of the cores
        assert info.host_cpu_threads == 1
        assert torch.get_num_threads() == max(1, (os.cpu_count() or 1) - 1)
    assert seen == {"reward launched first": True, "reward not waited for": True}


def test_work_that_fails_while_the_reward_service_starts_leaves_no_service_behind(tmp_path: Path) -> None:
    def fail() -> None:
        raise RuntimeError("the warm-up broke")

    absent = str(tmp_path / "absent")
    with (
        pytest.raises(RuntimeError, match="the warm-up broke"),
        local_services(absent, tmp_path, CONFIG, max_staleness=0, while_reward_starts=fail),
    ):
        pytest.fail("the services must not start")
    assert processes_naming(str(tmp_path / "services" / "reward.port")) == []


def test_a_request_the_rollout_refuses_mid_run_ends_the_run_with_a_sentence_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from grpo_learner.cli import main

    model = save_tiny_model(tmp_path / "model")
    data = tmp_path / "long.jsonl"
    data.write_text('{"question": "' + " ".join(["t5"] * 300) + '", "answer": "1"}\n')  # > 256 positions
    argv = ["train", "--model", model, "--data", str(data), "--run-dir", str(tmp_path / "run")]
    code = main([*argv, "--max-steps", "1", "--no-progress", "--set", "data.apply_chat_template=false"])
    err = capsys.readouterr().err
    assert code == 1
    assert "refused the request" in err and "exceeds the model's context of 256" in err
    assert "Traceback" not in err
    assert not processes_naming(str(tmp_path / "run"))  # its services went with it
