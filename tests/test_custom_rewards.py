"""Composed and custom rewards through real service processes, as a user runs them.

- examples/custom-reward installed into the reward service's environment only (`uv pip install
  --target`, PYTHONPATH; found through its `grpo.tasks` entry point), weighed together with `math`
  correctness, `format` and the `length` penalty under normalize_then_sum: the spec travels with every
  request and every component is logged as `rewards/<name>/mean`;
- a task that never returns: its items time out, are counted as `reward/timeouts`, and their groups
  are dropped and re-sent once, never trained on as zeros;
- correctness composed with a reward model (`--reward-model`, a tiny sequence classifier in its own
  process) and a judge (`--judge`, a real HTTP server speaking OpenAI's chat-completions API over a
  tiny transformers model: packages/reward/tests/openai_chat_server.py).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from grpo_learner.embedded.model import build_tiny_model
from grpo_learner.embedded.reward_model import build_reward_model
from grpo_learner.embedded.task import split_problems
from grpo_learner.embedded.tokenizer import build_tokenizer
from grpo_learner.local.service_processes import find_executable, start_service
from grpo_learner.monitoring.metrics import read_metrics

pytestmark = pytest.mark.slow

TEST_PLUGINS = Path(__file__).resolve().parent / "reward_plugins"
CHAT_SERVER = Path(__file__).resolve().parents[1] / "packages/reward/tests/openai_chat_server.py"
STEPS = 2

# 4 prompts x 4 completions of <= 8 tokens per step: small enough for 2 shared CPU cores.
RUN = """
[data]
apply_chat_template = false
[rollout]
group_size = 4
prompts_per_step = 4
backoff_s = 0.2
[rollout.sampling]
max_new_tokens = 8
[optim]
lr = 1e-3
[train]
device = "cpu"
torch_threads = 1
"""


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The embedded tiny model, and problems with a `task` column and an extra column per row."""
    root = tmp_path_factory.mktemp("assets")
    tokenizer = build_tokenizer()
    build_tiny_model(tokenizer, seed=0).save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    train, _ = split_problems(0)
    rows = [
        {"question": p.prompt, "answer": p.reference, "task": "math", "target_chars": 6 + i % 3}
        for i, p in enumerate(train[:32])
    ]
    data = root / "problems.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in rows))
    build_reward_model(tokenizer, seed=0).save_pretrained(root / "reward-model")
    tokenizer.save_pretrained(root / "reward-model")
    return root / "model", data


@pytest.fixture(scope="module")
def judge_url() -> Iterator[str]:
    """A real OpenAI-style chat-completions server over a tiny digits-only model: every reply is a digit."""
    spec = importlib.util.spec_from_file_location("openai_chat_server", CHAT_SERVER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with module.chat_server() as (url, _):
        yield url


@pytest.fixture(scope="module")
def rollout_address(
    tmp_path_factory: pytest.TempPathFactory,
    model_and_data: tuple[Path, Path],
    install_example: Callable[[str, Path], Path],
    judge_url: str,
) -> Iterator[str]:
    """A reward service with examples/custom-reward installed in its environment alone (and the
    stalling test task loaded with --plugin, a reward model and a judge), and a rollout service."""
    root = tmp_path_factory.mktemp("services")
    target = install_example("custom-reward", root / "plugins")
    path = os.pathsep.join(p for p in (str(target), str(TEST_PLUGINS), os.environ.get("PYTHONPATH", "")) if p)
    reward_config = root / "reward.toml"  # the judge's rubric settings: the digits model answers one digit
    reward_config.write_text(
        f'[[judges]]\nname = "judge"\nurl = "{judge_url}"\nscore_pattern = \'^\\s*(\\d)\\s*$\'\n'
        "max_score = 9\nmax_tokens = 1\n"
    )
    reward_argv = [find_executable("grpo-reward"), "serve", "--workers", "1", "--config", str(reward_config)]
    reward_argv += ["--plugin", "stall_rewards:stall"]
    reward_argv += ["--reward-model", f"rm={model_and_data[0].parent / 'reward-model'}"]
    services = [start_service("reward", reward_argv, root, env={"PYTHONPATH": path})]
    try:
        rollout_argv = [
            find_executable("grpo-rollout"), "serve", "--model", str(model_and_data[0]), "--generator",
            "hf", "--device", "cpu", "--torch-threads", "1", "--reward-address", services[0].address,
        ]  # fmt: skip
        services.append(start_service("rollout", rollout_argv, root))
        yield services[-1].address
    finally:
        for service in reversed(services):
            service.stop(timeout_s=5)


def train(run_dir: Path, assets: tuple[Path, Path], rollout: str, settings: str, *flags: str) -> list[dict]:
    """`grpo train` on `rollout` with RUN plus `settings` and `flags`; the metrics records of the run."""
    run_dir.mkdir(parents=True)
    config = run_dir / "run.toml"
    top = f"run_dir = {str(run_dir)!r}\ntensorboard = false\n{settings}\n"
    config.write_text(RUN.replace("[data]", f"{top}[data]", 1))
    model, data = assets
    argv = [
        find_executable("grpo"), "train", "--config", str(config), "--model", str(model),
        "--data", str(data), "--rollout", rollout, "--max-steps", str(STEPS), "--no-progress", *flags,
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return read_metrics(run_dir)


COMPOSED = """
[reward]
components = [
  {name = "correctness", weight = 1.0},
  {name = "format", weight = 0.1},
  {name = "length", weight = 1.0, max_completion_tokens = 6, overlong_buffer_tokens = 2},
  {name = "brevity", weight = 0.5},
]
[loss.advantage]
combine = "normalize_then_sum"
"""


def test_a_plugin_reward_trains_with_math_format_and_length(
    tmp_path: Path, model_and_data: tuple[Path, Path], rollout_address: str
) -> None:
    records = train(tmp_path / "run", model_and_data, rollout_address, COMPOSED)
    assert len(records) == STEPS
    for record in records:  # no group refused, e.g. for a component the service did not compute
        assert record["num_groups"] == 4, record
        assert record.get("groups/dropped_invalid", 0) == 0
        assert record["reward/timeouts"] == 0
        assert 0 <= record["rewards/correctness/mean"] <= 1
        assert 0 <= record["rewards/format/mean"] <= 1
        assert -1 <= record["rewards/length/mean"] <= 0
        assert 0 <= record["rewards/brevity/mean"] <= 1
    # 8-token completions against a 6-token maximum: the penalty is really computed.
    assert min(r["rewards/length/mean"] for r in records) < 0


STALLING = """
[reward]
components = [{name = "correctness", weight = 1.0}, {name = "stall_rewards:stall", weight = 1.0}]
timeout_s = 0.2
"""


def test_timed_out_scores_are_counted_and_their_groups_never_trained_on(
    tmp_path: Path, model_and_data: tuple[Path, Path], rollout_address: str
) -> None:
    records = train(
        tmp_path / "run", model_and_data, rollout_address, STALLING,
        "--set", "train.max_refill_rounds=1", "--set", "train.max_steps=1",
    )  # fmt: skip
    (record,) = records
    # 4 groups of 4 timed out, were re-sent once (refill) and timed out again: 8 dropped, none trained.
    assert record["reward/timeouts"] == 32, record
    assert record["groups/dropped_timeout"] == 8
    assert "num_groups" not in record  # the step had no trainable group: weights unchanged


MODEL_TERMS = """
[reward]
components = [
  {name = "correctness", weight = 1.0}, {name = "rm", weight = 0.5}, {name = "judge", weight = 0.5},
]
"""


def test_correctness_trains_composed_with_a_reward_model_and_a_judge(
    tmp_path: Path, model_and_data: tuple[Path, Path], rollout_address: str
) -> None:
    records = train(
        tmp_path / "run", model_and_data, rollout_address, MODEL_TERMS, "--set", "train.max_steps=1"
    )
    (record,) = records
    assert record["num_groups"] == 4, record  # every completion was scored by both: no group dropped
    assert record["reward/timeouts"] == 0
    assert 0 <= record["rewards/correctness/mean"] <= 1
    assert 0 <= record["rewards/judge/mean"] <= 1  # a digit out of 9
    assert record["rewards/rm/mean"] != 0  # the reward model's logit
    assert record["rewards/rm/latency_s/mean"] > 0 and record["rewards/judge/latency_s/mean"] > 0
    assert record["rewards/judge/attempts/mean"] == 1
