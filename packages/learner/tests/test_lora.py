"""[model.lora]: adapters only in the optimizer, the merged weights, the free reference (tiny Qwen2)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from grpo_common.config import ConfigError
from grpo_learner.config import load_learner_config
from grpo_learner.config.lora import LoraConfig
from grpo_learner.data.synthetic import synthetic_groups
from grpo_learner.grpo.parallelism import SingleProcess
from grpo_learner.grpo.update import prepare_batch
from grpo_learner.lora.adapters import add_adapters, parameter_counts
from grpo_learner.lora.merge import merged_state_dict
from grpo_learner.training.assembly import build_trainer
from learner_fixtures import save_tiny_model, tiny_qwen2
from torch import nn

torch.set_num_threads(1)


def lora_config(model_dir: str, **lora) -> object:
    return load_learner_config(
        overrides={
            "model.name_or_path": model_dir,
            "model.lora": {"rank": 4, **lora},
            "loss.beta": 0.04,
            "optim.lr": 1e-2,
            "train.device": "cpu",
            "train.micro_batch_size": 4,
        }
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    return save_tiny_model(tmp_path_factory.mktemp("tiny"))


def test_lora_section_defaults_to_full_fine_tuning_and_refuses_an_empty_target_list():
    config = load_learner_config(overrides={"model.name_or_path": "m"})
    assert not config.model.lora.enabled and config.model.lora.rank == 0
    assert LoraConfig(rank=16).scale_alpha == 32.0 and LoraConfig(rank=8, alpha=8).scale_alpha == 8.0
    with pytest.raises(ConfigError, match=r"model\.lora\.target_modules"):
        load_learner_config(overrides={"model.name_or_path": "m", "model.lora.target_modules": []})
    with pytest.raises(ConfigError, match=r"model\.lora\.rank"):
        load_learner_config(overrides={"model.name_or_path": "m", "model.lora.rank": -1})


def test_only_adapter_parameters_train_and_reach_the_optimizer(model_dir: str):
    trainer = build_trainer(
        lora_config(model_dir, target_modules=["q_proj", "v_proj"]), model_dir, 0, model_dir
    )
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert all("q_proj" in n or "v_proj" in n for n in trainable)
    in_optimizer = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for p in trainer.model.parameters() if p.requires_grad}
    counts = parameter_counts(trainer.model)
    # 2 layers x (q: 4x32 + 32x4, v: 4x32 + 16x4) adapter weights
    assert counts.trainable == 2 * (4 * 32 + 32 * 4 + 4 * 32 + 16 * 4)
    base = sum(p.numel() for p in tiny_qwen2().parameters())
    assert counts.total == base + counts.trainable
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.update(synthetic_groups(0, seed=1))
    moved = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    assert moved and moved <= trainable  # the base weights did not change


def test_an_unknown_target_module_is_refused_naming_the_linear_layers():
    with pytest.raises(ValueError, match=r"target_modules.*'q_proj'"):
        add_adapters(tiny_qwen2(), LoraConfig(rank=4, target_modules=["qkv"]))


def test_merged_state_dict_is_merge_and_unload_under_the_base_names():
    base = tiny_qwen2()
    model = add_adapters(copy.deepcopy(base), LoraConfig(rank=4, alpha=12))
    assert torch.equal(
        merged_state_dict(model)["model.layers.0.mlp.up_proj.weight"], base.model.layers[0].mlp.up_proj.weight
    )
    for name, param in model.named_parameters():
        if ".lora_B." in name:  # trained adapters: B is no longer 0
            nn.init.normal_(param, std=0.1)
    merged = merged_state_dict(model)
    reference = copy.deepcopy(model).merge_and_unload().state_dict()
    assert merged.keys() == reference.keys() == base.state_dict().keys()
    assert all(torch.allclose(merged[k], reference[k], atol=1e-6) for k in merged)
    changed = [k for k in merged if not torch.equal(merged[k], base.state_dict()[k])]
    assert changed and all(k.endswith("proj.weight") for k in changed)


def test_the_reference_is_the_base_model_under_the_adapters_and_no_second_model(model_dir: str):
    base = copy.deepcopy(tiny_qwen2())  # the model as saved, before any wrapping
    trainer = build_trainer(lora_config(model_dir), model_dir, 0, model_dir)
    assert trainer.reference is None
    held = [v for v in vars(trainer).values() if isinstance(v, nn.Module)]
    assert held == [trainer.model]
    assert parameter_counts(trainer.model).total == sum(p.numel() for p in base.parameters()) + (
        parameter_counts(trainer.model).trainable
    )
    for step in range(2):  # adapters trained: the policy is no longer the base model
        metrics = trainer.update(synthetic_groups(step, seed=1))
    assert metrics["kl"] > 0
    batch = prepare_batch(synthetic_groups(5, seed=1), trainer.config, torch.device("cpu"))
    reference = trainer.reference_logprobs(batch)
    plain = SingleProcess(trainer.config.train, trainer.config.rollout.sampling)
    with torch.no_grad():
        expected = [plain.logprobs(base, mb, with_entropy=False)[0] for mb in batch.micro_batches]
        policy = [plain.logprobs(trainer.model, mb, with_entropy=False)[0] for mb in batch.micro_batches]
    assert all(torch.equal(r, e) for r, e in zip(reference, expected, strict=True))
    assert not all(torch.allclose(p, e) for p, e in zip(policy, expected, strict=True))
    assert any(p.requires_grad for p in trainer.model.parameters())  # adapters back on, trainable


def test_a_lora_checkpoint_does_not_resume_as_full_fine_tuning(tmp_path: Path, model_dir: str):
    from grpo_learner.lora.adapters import check_checkpoint_kind

    trainer = build_trainer(lora_config(model_dir), model_dir, 0, model_dir)
    trainer.model.save_pretrained(tmp_path / "model")
    with pytest.raises(ValueError, match="holds LoRA adapters"):
        check_checkpoint_kind(tmp_path / "model", LoraConfig())
    with pytest.raises(ValueError, match="full fine-tuning checkpoint"):
        check_checkpoint_kind(Path(model_dir), LoraConfig(rank=4))


def test_grpo_export_merge_writes_a_hf_model_with_the_lora_models_logits(
    tmp_path: Path, model_dir: str, capsys
):
    from grpo_common.hf_tokenizer import load_tokenizer
    from grpo_learner.cli import main
    from grpo_learner.training.checkpoint import TrainerState, save_checkpoint
    from transformers import AutoModelForCausalLM

    trainer = build_trainer(lora_config(model_dir), model_dir, 0, model_dir)
    for step in range(2):
        trainer.update(synthetic_groups(step, seed=1))
    path = save_checkpoint(
        tmp_path / "checkpoints",
        TrainerState(2, 2),
        trainer.model,
        trainer.optimizer,
        trainer.scheduler,
        load_tokenizer(model_dir),
    )
    out = tmp_path / "merged"
    assert main(["export", "--merge", str(path), str(out)]) == 0
    assert not (out / "adapter_config.json").exists() and (out / "tokenizer.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    trainer.model.eval()
    ids = torch.tensor([[1, 5, 9, 13, 17, 21, 25, 29], [2, 4, 6, 8, 10, 12, 14, 16]])
    with torch.no_grad():
        expected, got = trainer.model(input_ids=ids).logits, merged(input_ids=ids).logits
        base = (
            AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()(input_ids=ids).logits
        )
    assert torch.allclose(got, expected, atol=1e-5), float((got - expected).abs().max())
    assert not torch.allclose(got, base, atol=1e-3)  # the adapters' training is in the export
    assert main(["export", "--merge", model_dir, str(tmp_path / "again")]) == 2
    assert "full fine-tuning checkpoint: nothing to merge" in capsys.readouterr().err


def test_the_team_hands_the_push_what_both_lora_modes_select_from(model_dir: str, tmp_path: Path):
    """The team's weights are the model's own (peft names): merged mode folds them, adapter mode finds
    the adapter in them (a team that merged first left adapter mode no lora_A/B to send)."""
    import asyncio

    from grpo_learner.training.team import SingleProcessTeam
    from grpo_learner.weight_sync.push_selection import select_for, without_aliases

    trainer = build_trainer(lora_config(model_dir, target_modules=["q_proj"]), model_dir, 0, model_dir)
    trainer.update(synthetic_groups(0, seed=1))  # B != 0, so the merged weights differ from the base
    weights = asyncio.run(SingleProcessTeam(trainer, tmp_path, 1).full_weights())
    merged = select_for(trainer.model, "merged").everything(weights)
    expected = without_aliases(merged_state_dict(trainer.model))  # a tied lm_head goes once
    assert merged.keys() == expected.keys()
    assert all(torch.equal(merged[name], expected[name]) for name in expected)
    adapter = select_for(trainer.model, "adapter").everything(weights)
    assert adapter and all(".lora_A.weight" in n or ".lora_B.weight" in n for n in adapter)
    assert len(adapter) == 2 * 2  # two layers' q_proj, A and B
