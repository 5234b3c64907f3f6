"""The README's "Each service alone, on separate machines" recipe, run as written (issue 11, item 8).

The commands are read from the README itself, so the test fails when the recipe stops working.
Three processes start independently, with auth and TLS on and one variable (GRPO_AUTH_TOKEN) set
for each: `grpo-reward serve`, `grpo-rollout serve`, then `grpo train --rollout ADDRESS`. What the
test changes, and only that: machine names become `localhost` with the ports the services really
bound (each still gets the README's flags; the launcher appends `--host 127.0.0.1 --port 0`, which
argparse lets win), the model becomes a tiny one built from a config, `--workers 8` becomes 1, the
second rollout address is dropped, and the learner gets flags for a two-step CPU run. The learner
must train, and the weights must reach the rollout service (GetInfo's policy_version).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from grpo.v1 import rollout_pb2, rollout_pb2_grpc
from grpo_common.channel import ChannelConfig, create_channel
from grpo_common.security import ClientTLSConfig
from grpo_learner.embedded.model import build_tiny_model
from grpo_learner.embedded.task import split_problems
from grpo_learner.embedded.tokenizer import build_tokenizer
from grpo_learner.local.service_processes import ServiceProcess, find_executable, start_service
from grpo_learner.monitoring.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "packages" / "common" / "tests"))
from common_fixtures import _make_ca, _make_leaf  # noqa: E402  (test certificates, made by openssl)

pytestmark = pytest.mark.slow

README_MODEL = "Qwen/Qwen2.5-1.5B-Instruct"
TINY_RUN = [
    "--max-steps", "2", "--no-progress",
    "--set", "data.apply_chat_template=false",
    "--set", "rollout.group_size=4",
    "--set", "rollout.prompts_per_step=4",
    "--set", "rollout.sampling.max_new_tokens=8",
    "--set", "optim.warmup_steps=0",
    "--set", "tensorboard=false",
    "--set", "train.device=cpu",
    "--set", "train.micro_batch_size=8",
    "--set", "model.gradient_checkpointing=false",
]  # fmt: skip


def recipe_commands() -> dict[str, list[str]]:
    """The README section's shell commands by program, continuation lines joined, comments dropped."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Each service alone, on separate machines", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the recipe's bash block is missing from the README"
    lines = block.group(1).replace("\\\n", " ").splitlines()
    commands = {}
    for line in lines:
        words = shlex.split(line, comments=True)
        if words:
            commands[" ".join(words[:2]) if words[0] == "grpo" else words[0]] = words
    assert set(commands) == {"export", "grpo-reward", "grpo-rollout", "grpo train"}, commands
    assert commands["export"][1].startswith("GRPO_AUTH_TOKEN="), "one variable, the token, per machine"
    return commands


def replace(words: list[str], old: str, new: str) -> list[str]:
    assert old in words, f"the recipe no longer says {old!r}: update this test's substitutions"
    return [new if word == old else word for word in words]


def drop_flag(words: list[str], flag: str, value: str) -> list[str]:
    for i in range(len(words) - 1):
        if words[i : i + 2] == [flag, value]:
            return words[:i] + words[i + 2 :]
    raise AssertionError(f"the recipe no longer says {flag} {value}")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """The files the recipe names, where it names them: certificates, the example config, data."""
    certs = tmp_path / "certs"
    certs.mkdir()
    _make_ca(certs, "ca")
    _make_leaf(certs, "server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    for host in ("a", "b"):  # each host's certificate (both for localhost here)
        shutil.copy(certs / "server.pem", tmp_path / f"{host}.pem")
        shutil.copy(certs / "server.key", tmp_path / f"{host}.key")
    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "multi-machine.toml", tmp_path / "examples")
    train, _ = split_problems(0)
    problems = (json.dumps({"question": p.prompt, "answer": p.reference}) for p in train[:32])
    (tmp_path / "math.jsonl").write_text("\n".join(problems))
    tokenizer = build_tokenizer()
    build_tiny_model(tokenizer, seed=0).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    return tmp_path


def policy_version(address: str, workspace: Path, token: str) -> int:
    config = ChannelConfig(tls=ClientTLSConfig(ca=workspace / "certs" / "ca.pem"), auth_token=token)

    async def ask() -> int:
        async with create_channel(address, config) as channel:
            info = await rollout_pb2_grpc.RolloutServiceStub(channel).GetInfo(
                rollout_pb2.GetInfoRequest(), timeout=10
            )
            return info.policy_version

    return asyncio.run(ask())


def test_the_readme_recipe_trains_with_auth_and_tls_on(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = recipe_commands()
    token = secrets.token_hex(16)
    env = {"GRPO_AUTH_TOKEN": token}  # what `export` sets on each machine
    monkeypatch.chdir(workspace)  # the recipe's relative paths (certs/ca.pem, a.pem, ...) from here
    services: list[ServiceProcess] = []
    try:
        reward_argv = replace(commands["grpo-reward"], "8", "1")  # --workers 8: two cores here
        reward_argv[0] = find_executable("grpo-reward")
        reward = start_service("reward", reward_argv, workspace / "logs", env=env)
        services.append(reward)

        rollout_argv = replace(commands["grpo-rollout"], README_MODEL, str(workspace / "model"))
        rollout_argv = replace(rollout_argv, "machine-a:50053", f"localhost:{reward.port}")
        rollout_argv[0] = find_executable("grpo-rollout")
        rollout = start_service("rollout", rollout_argv, workspace / "logs", env=env)
        services.append(rollout)
        address = f"localhost:{rollout.port}"
        assert policy_version(address, workspace, token) == 0

        learner_argv = drop_flag(commands["grpo train"], "--rollout", "machine-c:50052")
        learner_argv = replace(learner_argv, "machine-b:50052", address)
        learner_argv = [
            find_executable("grpo"),
            *learner_argv[1:],
            "--model",
            str(workspace / "model"),
            *TINY_RUN,
        ]
        learner = subprocess.run(
            learner_argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=400
        )
        assert learner.returncode == 0, learner.stdout[-2000:] + learner.stderr[-3000:]

        records = read_metrics(workspace / "runs" / "multi")
        assert [r["step"] for r in records] == [1, 2]
        assert policy_version(address, workspace, token) == 2  # the weights reached the rollout service
        rollout_log = rollout.log_path.read_text()
        assert "UNAUTHENTICATED" not in rollout_log and re.search(r"Generate: [1-9]\d* of", rollout_log)
    finally:
        for service in reversed(services):
            service.stop(timeout_s=5)
