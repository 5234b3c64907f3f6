"""Checkpoints: HF-loadable model (or LoRA adapters), atomic writes, keep-last-K, exact resume on CPU."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from grpo_learner.config import OptimConfig
from grpo_learner.data.synthetic import synthetic_groups
from grpo_learner.grpo.optim import build_optimizer, build_scheduler
from grpo_learner.grpo.update import Trainer
from grpo_learner.training.assembly import build_trainer, resume_state, seed_everything
from grpo_learner.training.checkpoint import (
    TrainerState,
    latest_checkpoint,
    list_checkpoints,
    load_training_state,
    save_checkpoint,
)
from learner_fixtures import default_config, loss_settings, save_tiny_model, tiny_qwen2, update_config
from transformers import AutoModelForCausalLM

torch.set_num_threads(1)

OPTIM = OptimConfig(lr=3e-3, warmup_steps=2, schedule="cosine", weight_decay=0.1, max_grad_norm=0.5)
CONFIG = update_config(5, loss=loss_settings(0.2, 0.28, loss_type="dapo", num_iterations=2))
STEPS = 4


def make_trainer(model) -> Trainer:
    optimizer = build_optimizer(model, OPTIM)
    scheduler = build_scheduler(optimizer, OPTIM, total_optimizer_steps=STEPS * CONFIG.loss.num_iterations)
    return Trainer(model, optimizer, scheduler, CONFIG)


def train(trainer: Trainer, steps: range) -> None:
    for step in steps:
        trainer.update(synthetic_groups(step, seed=1))


def test_resume_is_bit_identical_to_training_straight_through(tmp_path: Path):
    straight = make_trainer(tiny_qwen2(seed=0))
    train(straight, range(STEPS))

    first = make_trainer(tiny_qwen2(seed=0))
    train(first, range(STEPS // 2))
    path = save_checkpoint(
        tmp_path, TrainerState(STEPS // 2, STEPS // 2), first.model, first.optimizer, first.scheduler
    )
    del first

    torch.manual_seed(1234)  # a fresh process would have other RNG states and a fresh model
    model = AutoModelForCausalLM.from_pretrained(path / "model", dtype=torch.float32)
    resumed = make_trainer(model)
    state = load_training_state(path, resumed.optimizer, resumed.scheduler)
    assert state.step == STEPS // 2
    train(resumed, range(state.step, STEPS))

    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert resumed.scheduler.last_epoch == straight.scheduler.last_epoch
    assert resumed.optimizer.param_groups[0]["lr"] == straight.optimizer.param_groups[0]["lr"]


def test_rng_states_are_restored(tmp_path: Path):
    model = tiny_qwen2()
    trainer = make_trainer(model)
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    path = save_checkpoint(tmp_path, TrainerState(1, 1), model, trainer.optimizer, trainer.scheduler)
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    load_training_state(path, trainer.optimizer, trainer.scheduler)
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected


def test_keeps_last_k_and_ignores_unfinished_directories(tmp_path: Path):
    model = tiny_qwen2()
    trainer = make_trainer(model)
    for step in (1, 2, 3):
        save_checkpoint(
            tmp_path, TrainerState(step, step), model, trainer.optimizer, trainer.scheduler, keep_last=2
        )
    (tmp_path / ".tmp-step-000009-1").mkdir()  # a crash mid-write
    (tmp_path / "step-000010").mkdir()  # renamed dirs are always complete; this one has no state
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000002", "step-000003"]
    assert latest_checkpoint(tmp_path) == tmp_path / "step-000003"
    assert latest_checkpoint(tmp_path / "missing") is None


def test_checkpoint_model_loads_with_from_pretrained_and_has_no_pickle(tmp_path: Path):
    model = tiny_qwen2(tie=False)
    trainer = make_trainer(model)
    path = save_checkpoint(
        tmp_path, TrainerState(7, 7, data={"cursor": 3}), model, trainer.optimizer, trainer.scheduler
    )
    loaded = AutoModelForCausalLM.from_pretrained(path / "model")
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    assert not list(path.rglob("*.bin")) and not list(path.rglob("*.pt"))
    state = load_training_state(path, trainer.optimizer, trainer.scheduler)
    assert state == TrainerState(7, 7, data={"cursor": 3})


def test_lora_resume_is_bit_identical_to_training_straight_through(tmp_path: Path):
    """Adapters in peft's format + optimizer/RNG state; dropout on the adapters draws from the RNG."""
    model_dir = save_tiny_model(tmp_path / "base")
    config = default_config(
        model={"name_or_path": model_dir, "lora": {"rank": 4, "dropout": 0.1}},
        optim=OPTIM.model_dump(),
        loss={"loss_type": "dapo", "num_iterations": 2, "epsilon_high": 0.28, "beta": 0.04},
        train={"max_steps": STEPS, "micro_batch_size": 5, "device": "cpu"},
    )
    seed_everything(0)
    straight = build_trainer(config, model_dir, 0, model_dir)
    train(straight, range(STEPS))

    seed_everything(0)
    first = build_trainer(config, model_dir, 0, model_dir)
    train(first, range(STEPS // 2))
    path = save_checkpoint(
        tmp_path / "checkpoints",
        TrainerState(STEPS // 2, STEPS // 2),
        first.model,
        first.optimizer,
        first.scheduler,
    )
    del first
    assert sorted(p.name for p in (path / "model").iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]

    torch.manual_seed(1234)
    resumed = build_trainer(config, str(path / "model"), 0, model_dir)  # base + the saved adapters
    state = resume_state(path, resumed)
    assert state.step == STEPS // 2
    train(resumed, range(state.step, STEPS))

    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and any(".lora_B." in k for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert not torch.equal(
        a["base_model.model.model.layers.0.mlp.up_proj.lora_B.default.weight"], torch.zeros(64, 4)
    )
