"""The learner on several processes (torch.distributed, FSDP2, gloo on CPU), with real processes.

Every run trains a tiny Qwen2 on `SyntheticGroupSource` batches (rank 0's source; see
distributed_worker.py), so the same global batches reach a one-process and a two-process run.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from distributed_worker import SOURCE_SEED
from grpo_learner.cli import main
from grpo_learner.config import LearnerConfig
from grpo_learner.data.synthetic import SyntheticGroupSource
from grpo_learner.training.checkpoint import latest_checkpoint
from grpo_learner.training.loop import run_training
from learner_fixtures import save_tiny_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

torch.set_num_threads(1)

WORKER = Path(__file__).parent / "distributed_worker.py"
STEPS = 4
TIMEOUT_S = 10.0  # distributed.timeout_s of these runs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def learner_config(model_dir: str, run_dir: Path, **sections) -> dict:
    data = {
        "model": {"name_or_path": model_dir},
        "rollout": {"group_size": 4, "sampling": {"max_new_tokens": 12, "temperature": 0.9}},
        "optim": {
            "lr": 1e-3,
            "warmup_steps": 1,
            "schedule": "cosine",
            "weight_decay": 0.01,
            "max_grad_norm": 0.5,  # clipped every step: the global norm over shards must be right
        },
        # dapo: token mean over the whole batch; beta > 0: the reference model is sharded too;
        # mu = 2: old logprobs and two optimizer steps per batch.
        "loss": {"loss_type": "dapo", "num_iterations": 2, "epsilon_high": 0.28, "beta": 0.04},
        # 16 sequences, 3 per micro-batch: 3 micro-batches per rank (one of them a filler on one rank)
        "train": {"max_steps": STEPS, "micro_batch_size": 3, "seed": 3},
        "checkpoint": {"interval": 2, "keep_last": 2},
        "distributed": {"timeout_s": TIMEOUT_S},
        "run_dir": str(run_dir),
        "tensorboard": False,
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return data


def child_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def torchrun(config: dict, tmp: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    """The worker on 2 ranks under `python -m torch.distributed.run`."""
    path = tmp / f"config-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(config))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(free_port()),
        str(WORKER),
        str(path),
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=child_env())


def hf_export(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "checkpoints" / f"step-{step:06d}" / "model" / "model.safetensors")


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    return save_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def two_process_run(tiny_model, tmp_path_factory) -> Path:
    """4 steps straight through on 2 ranks; checkpoints at steps 2 and 4. Packed on every step
    (train.packing = true), where the one-process run is padded: their comparison also proves
    packing exact under FSDP2."""
    tmp = tmp_path_factory.mktemp("two")
    done = torchrun(learner_config(tiny_model, tmp / "run", train={"packing": True}), tmp)
    assert done.returncode == 0, done.stderr[-4000:]
    return tmp / "run"


@pytest.fixture(scope="module")
def one_process_run(tiny_model, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("one") / "run"
    padded = {"train": {"packing": False}}
    config = LearnerConfig.model_validate(learner_config(tiny_model, run_dir, **padded))
    asyncio.run(run_training(config, source=SyntheticGroupSource(seed=SOURCE_SEED), progress=False))
    return run_dir


def test_two_processes_train_the_same_weights_as_one_on_the_same_global_batches(
    tiny_model: str, two_process_run: Path, one_process_run: Path
):
    initial = load_file(Path(tiny_model) / "model.safetensors")
    for step in (2, STEPS):
        one, two = hf_export(one_process_run, step), hf_export(two_process_run, step)
        assert one.keys() == two.keys() == initial.keys()  # HF names, tied lm_head once, no FSDP prefix
        worst = max(float((one[k] - two[k]).abs().max()) for k in one)
        assert worst < 1e-5, f"step {step}: weights differ by up to {worst}"
        moved = max(float((one[k] - initial[k]).abs().max()) for k in one)
        assert moved > 1e-3  # they did train: far beyond the tolerance
    # Metrics: whole-batch reward statistics on rank 0, loss statistics summed over the ranks.
    for a, b in zip(metrics(one_process_run), metrics(two_process_run), strict=True):
        for key in ("reward", "reward_std", "loss", "entropy", "kl", "grad_norm", "clip_ratio/high_mean"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-7), key
        assert b["num_groups"] == a["num_groups"] == 4
    export = two_process_run / "checkpoints" / f"step-{STEPS:06d}" / "model"
    model = AutoModelForCausalLM.from_pretrained(export, dtype=torch.float32)
    two = hf_export(two_process_run, STEPS)
    assert all(torch.equal(p, two[n]) for n, p in model.state_dict().items() if n in two)
    state = json.loads((export.parent / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and state["step"] == STEPS and state["data"] == {"cursor": STEPS}


def test_a_rank_that_dies_fails_the_job_within_the_timeout_with_a_message(tiny_model: str, tmp_path: Path):
    # Plain processes, no torchrun agent that would tear the job down for us: rank 0 must notice.
    run_dir = tmp_path / "run"
    config = tmp_path / "config.json"
    config.write_text(json.dumps(learner_config(tiny_model, run_dir, train={"max_steps": 500})))
    port = str(free_port())
    ranks = []
    for rank in range(2):
        env = {**child_env(), "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2"}
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        log = (tmp_path / f"rank{rank}.log").open("w")
        ranks.append(subprocess.Popen([sys.executable, str(WORKER), str(config)], env=env, stderr=log))
    try:
        deadline = time.monotonic() + 400  # generous: two steps took > 90 s at load 12-14
        while not (run_dir / "metrics.jsonl").exists() or len(metrics(run_dir)) < 2:
            assert time.monotonic() < deadline, (tmp_path / "rank0.log").read_text()[-3000:]
            assert ranks[0].poll() is None, (tmp_path / "rank0.log").read_text()[-3000:]
            time.sleep(0.1)
        ranks[1].send_signal(signal.SIGKILL)  # like the OOM killer, mid-run
        code = ranks[0].wait(timeout=TIMEOUT_S + 300)  # only a rank 0 that never notices reaches this
    finally:
        for process in ranks:
            if process.poll() is None:
                process.kill()
    log = (tmp_path / "rank0.log").read_text()
    assert code != 0
    assert "rank 0 of 2" in log and "another rank died" in log and "Connection" in log, log[-3000:]
    assert len(metrics(run_dir)) < 500


@pytest.fixture(scope="module")
def crashed_run(tiny_model, tmp_path_factory) -> Path:
    """2 ranks; rank 0's group source fails at step 3, after the step-2 checkpoint."""
    tmp = tmp_path_factory.mktemp("crashed")
    crashed = torchrun(learner_config(tiny_model, tmp / "run"), tmp, "--crash-at-step", "3")
    assert crashed.returncode != 0
    assert "simulated learner crash at step 3" in crashed.stderr
    # rank 1 was told why, rather than waiting for a timeout
    assert "rank 1: rank 0 stopped the run: RuntimeError: simulated learner crash" in crashed.stderr
    return tmp / "run"


def test_resume_on_two_processes_reaches_the_uninterrupted_weights(
    tiny_model: str, crashed_run: Path, two_process_run: Path
):
    assert latest_checkpoint(crashed_run / "checkpoints").name == "step-000002"
    tmp = crashed_run.parent
    resumed = torchrun(learner_config(tiny_model, crashed_run, checkpoint={"resume": True}), tmp)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    a, b = hf_export(two_process_run, STEPS), hf_export(crashed_run, STEPS)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    state = json.loads((crashed_run / "checkpoints" / f"step-{STEPS:06d}" / "trainer_state.json").read_text())
    assert state["data"] == {"cursor": STEPS} and state["world_size"] == 2
    shards = sorted(p.name for p in (crashed_run / "checkpoints" / "step-000004" / "shards").iterdir())
    assert shards == [".metadata", "__0_0.distcp", "__1_0.distcp"]


def test_resuming_a_two_process_checkpoint_in_one_process_is_refused_naming_both_sizes(
    tiny_model: str, crashed_run: Path, tmp_path: Path, capsys
):
    data = tmp_path / "problems.jsonl"
    data.write_text(json.dumps({"question": "1+1?", "answer": "2"}) + "\n")
    argv = ["train", "--model", tiny_model, "--data", str(data), "--rollout", "127.0.0.1:9"]
    code = main([*argv, "--run-dir", str(crashed_run), "--resume", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "was written by 2 learner process(es) but this run has 1" in err
    assert "--nproc 2" in err  # and what to do about it


def test_grpo_train_nproc_relaunches_under_torchrun_and_refuses_a_one_process_checkpoint(
    tiny_model: str, one_process_run: Path, tmp_path: Path
):
    data = tmp_path / "problems.jsonl"
    data.write_text(json.dumps({"question": "1+1?", "answer": "2"}) + "\n")
    command = [
        *(sys.executable, "-m", "grpo_learner", "train", "--nproc", "2", "--model", tiny_model),
        *("--data", str(data), "--rollout", "127.0.0.1:9", "--run-dir", str(one_process_run)),
        *("--resume", "--no-progress", "--set", f"distributed.timeout_s={TIMEOUT_S}"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=child_env())
    assert done.returncode != 0
    # both ranks refuse before training anything, then the launcher sums up
    assert done.stderr.count("was written by 1 learner process(es) but this run has 2") == 2, done.stderr[
        -3000:
    ]
    assert "grpo train: the 2 learner processes failed" in done.stderr


LORA = {"lora": {"rank": 4, "alpha": 8}}  # on every linear layer of the decoder; beta > 0: no reference


def adapters(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "checkpoints" / f"step-{step:06d}" / "model" / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def two_process_lora_run(tiny_model, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("two-lora")
    done = torchrun(learner_config(tiny_model, tmp / "run", model=LORA), tmp)
    assert done.returncode == 0, done.stderr[-4000:]
    return tmp / "run"


def test_two_processes_train_the_same_lora_adapters_as_one(
    tiny_model: str, two_process_lora_run: Path, tmp_path
):
    """FSDP2 units of frozen base weights and trainable adapters: sharded, trained, summed right."""
    run_dir = tmp_path / "one"
    config = LearnerConfig.model_validate(learner_config(tiny_model, run_dir, model=LORA))
    asyncio.run(run_training(config, source=SyntheticGroupSource(seed=SOURCE_SEED), progress=False))
    for step in (2, STEPS):
        one, two = adapters(run_dir, step), adapters(two_process_lora_run, step)
        assert one.keys() == two.keys() and len(one) == 2 * 7 * 2  # 2 layers x 7 linear x (A, B)
        worst = max(float((one[k] - two[k]).abs().max()) for k in one)
        assert worst < 1e-5, f"step {step}: adapters differ by up to {worst}"
        moved = max(float(one[k].abs().max()) for k in one if ".lora_B." in k)  # B starts at 0
        assert moved > 1e-3
    for a, b in zip(metrics(run_dir), metrics(two_process_lora_run), strict=True):
        for key in ("loss", "entropy", "kl", "grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-7), key
    first = metrics(two_process_lora_run)[0]
    assert first["model/trainable_parameters"] < first["model/total_parameters"] / 2
    assert first["model/total_parameters"] == metrics(run_dir)[0]["model/total_parameters"]
