"""A step that leaves NaN/inf gradients or parameters stops the run before any push or checkpoint."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import torch
from grpo_learner.config import OptimConfig
from grpo_learner.grpo.nonfinite import NonFiniteUpdate, nonfinite_parameters
from grpo_learner.grpo.optim import build_optimizer, build_scheduler
from grpo_learner.grpo.update import Trainer
from grpo_learner.training.checkpoint import latest_checkpoint
from grpo_learner.training.loop import run_training
from learner_fixtures import group, save_tiny_model, tiny_qwen2, token_prompts, update_config
from recording_rollout import RecordingRollout, start_recording_rollout
from safetensors.torch import load_file
from test_loop import config

torch.set_num_threads(1)


def test_nan_from_the_model_stops_the_run_before_the_push_and_keeps_the_last_good_checkpoint(
    tmp_path: Path,
):
    model_dir = save_tiny_model(tmp_path / "model")
    prompts = token_prompts(12)
    cfg = config(
        model_dir,
        tmp_path / "run",
        loss={"num_iterations": 1},
        train={"max_steps": 4},
        checkpoint={"interval": 1, "keep_last": 5},
    )
    service = RecordingRollout(rewards_for=lambda prompt_id, index: float(index % 2))

    def poison(module, args, output):  # the third update (after version 2 arrived) goes NaN
        if isinstance(module, torch.nn.Embedding) and service.policy_version >= 2:
            return output * float("nan")
        return None

    async def scenario():
        server = await start_recording_rollout(service)
        handle = torch.nn.modules.module.register_module_forward_hook(poison)
        try:
            await run_training(cfg, prompts, addresses=[server.address], progress=False)
        finally:
            handle.remove()
            await server.stop(0)

    with pytest.raises(NonFiniteUpdate, match=r"gradient norm is nan.*latest checkpoint is the last good"):
        asyncio.run(scenario())
    assert [version for version, _ in service.updates] == [1, 2]  # version 3 never left the learner
    checkpoint = latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert checkpoint.name == "step-000002"
    weights = load_file(checkpoint / "model" / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())
    _, pushed = service.updates[-1]
    assert all(torch.equal(pushed[k], weights[k]) for k in weights)  # the checkpoint is what was served
    steps = [
        json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [1, 2]


def test_an_optimizer_step_that_leaves_inf_in_a_parameter_names_it():
    model = tiny_qwen2(seed=0)
    optim = OptimConfig(lr=1e-3, max_grad_norm=1.0)
    optimizer = build_optimizer(model, optim)
    trainer = Trainer(
        model, optimizer, build_scheduler(optimizer, optim, 4), update_config(micro_batch_size=4)
    )
    batch = [group((2, 3), [(5, 6, 7), (8, 9)], [1.0, 0.0])]
    trainer.update(batch)  # a good step passes

    def overflow(optimizer, args, kwargs):  # as a faulty kernel would: finite gradients, inf weight
        with torch.no_grad():
            model.model.norm.weight[0] = float("inf")

    optimizer.register_step_post_hook(overflow)
    with pytest.raises(NonFiniteUpdate, match=r"left NaN or inf in 1 parameter\(s\) \(model\.norm\.weight\)"):
        trainer.update(batch)
    assert trainer.scheduler.last_epoch == 1  # the schedule did not advance past the bad step


def test_the_nonfinite_check_names_every_bad_tensor_and_clears_finite_ones_whose_norm_overflows():
    named = [
        ("finite", torch.nn.Parameter(torch.ones(3))),
        ("nan", torch.nn.Parameter(torch.tensor([1.0, float("nan")]))),
        ("huge", torch.nn.Parameter(torch.full((4,), 3e38))),  # finite, but its 2-norm is inf in fp32
        ("inf", torch.nn.Parameter(torch.tensor([-float("inf")]))),
        ("empty", torch.nn.Parameter(torch.zeros(0))),
    ]
    assert nonfinite_parameters(named) == ["nan", "inf"]
    assert nonfinite_parameters([named[0], named[2], named[4]]) == []
