"""Merged LoRA tensors under base names, computed from the state dict, equal peft's own merge."""

from __future__ import annotations

import copy

import peft
import pytest
import torch
from grpo_learner.lora.merged_weights import LoraLayout, merged_targeted_tensors
from grpo_learner.weight_sync.push_selection import FullWeights, LoraAdapter, LoraMerged, select_for
from learner_fixtures import tiny_qwen2

TARGETS = ["q_proj", "v_proj", "up_proj"]


def trained_peft(modules_to_save=None, tie: bool = True, seed: int = 0, **lora) -> peft.PeftModel:
    """A peft model whose adapters are not zero (B starts at zero: randomise it like a trained one)."""
    base = tiny_qwen2(seed=seed, tie=tie)
    config = peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=TARGETS, modules_to_save=modules_to_save, **lora
    )
    model = peft.get_peft_model(base, config)
    torch.manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                param.add_(torch.randn_like(param) * 0.1)
    return model


def base_copy_with(model: peft.PeftModel, tensors: dict[str, torch.Tensor]) -> torch.nn.Module:
    plain = copy.deepcopy(model).unload()  # the base model, adapters dropped
    state = plain.state_dict()
    for name, tensor in tensors.items():
        state[name].copy_(tensor)
    return plain


@pytest.mark.parametrize("modules_to_save", [None, ["lm_head"]])
def test_targeted_merged_tensors_on_the_base_model_reproduce_merge_and_unload_logits(modules_to_save):
    model = trained_peft(modules_to_save, tie=modules_to_save is None)
    live = {n: p.detach().clone() for n, p in model.state_dict().items()}
    tensors = merged_targeted_tensors(model)
    assert len([n for n in tensors if not n.startswith("lm_head")]) == 2 * len(TARGETS)  # two layers
    assert ("lm_head.weight" in tensors) == (modules_to_save is not None)
    assert all(not n.startswith("base_model") and ".lora_" not in n for n in tensors)
    applied = base_copy_with(model, tensors).eval()
    reference = copy.deepcopy(model).merge_and_unload().eval()
    ids = torch.tensor([[3, 7, 11, 5, 2, 9]])
    with torch.no_grad():
        torch.testing.assert_close(applied(ids).logits, reference(ids).logits, rtol=1e-5, atol=1e-5)
        # the training model was left alone: still unmerged, same parameters
        assert all(torch.equal(live[n], t) for n, t in model.state_dict().items())
    from peft.tuners.lora import LoraLayer

    assert not any(m.merged for m in model.modules() if isinstance(m, LoraLayer))


def test_merged_state_dict_is_the_whole_merged_model_under_base_names():
    model = trained_peft()
    layout = LoraLayout.of(model)
    merged = layout.merged_state_dict(model.state_dict(), torch.bfloat16)
    reference = copy.deepcopy(model).merge_and_unload().state_dict()
    assert merged.keys() == reference.keys()
    for name, tensor in reference.items():
        assert merged[name].dtype == torch.bfloat16
        torch.testing.assert_close(merged[name].float(), tensor.to(torch.bfloat16).float(), rtol=0, atol=1e-2)


def test_the_selection_follows_the_policy_and_the_mode():
    model = trained_peft()
    assert isinstance(select_for(tiny_qwen2(), "merged"), FullWeights)
    assert isinstance(select_for(model, "merged"), LoraMerged)
    adapter = select_for(model, "adapter")
    assert isinstance(adapter, LoraAdapter)
    spec = adapter.lora_adapter
    assert (spec.rank, spec.alpha, list(spec.target_modules)) == (4, 8.0, sorted(TARGETS))
    tensors = adapter.everything(model.state_dict())
    name = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"  # peft's saved name
    assert name in tensors and tensors[name].shape == (4, 32)
    assert len(tensors) == 2 * 3 * 2  # A and B, three modules, two layers


def test_adapter_mode_refuses_what_an_adapter_spec_cannot_express():
    with pytest.raises(ValueError, match="modules_to_save"):
        select_for(trained_peft(["lm_head"], tie=False), "adapter")
    with pytest.raises(ValueError, match="one rank and alpha"):
        select_for(trained_peft(alpha_pattern={"q_proj": 16}), "adapter")
