"""A LoRA policy pushed to a real rollout service (real gRPC, real transformers model).

Merged (hf): the first push carries the whole merged model, later ones only the merged targeted
tensors; after two training steps the service's model computes the learner's merged logits and
greedy tokens. Adapter (sglang against its stand-in): the learner's own pusher streams the adapter,
and the directory the service hands to /load_lora_adapter is one peft itself loads back.
"""

from __future__ import annotations

import asyncio
import copy
import sys
from pathlib import Path

import peft
import torch
from grpo_common.server import ServerConfig
from grpo_learner.embedded.model import build_tiny_model
from grpo_learner.embedded.tokenizer import build_tokenizer
from grpo_learner.weight_sync.grpc_pusher import WeightPusher
from grpo_learner.weight_sync.push_selection import select_for, without_aliases
from grpo_rollout.app import running_rollout
from grpo_rollout.backends.contract import SamplingParams
from grpo_rollout.config import RewardSettings, RolloutServiceConfig, SGLangSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "packages" / "rollout" / "tests"))
from rollout_sglang_standin import StandinServer
from rollout_sglang_standin_lora import LoraState

PROMPT = [5, 9, 13, 4, 7]


def lora_step(model: peft.PeftModel, optimizer: torch.optim.Optimizer, seed: int) -> None:
    """One optimizer step on a next-token loss: the adapters (only they are trainable) move."""
    torch.manual_seed(seed)
    ids = torch.randint(3, 40, (2, 12))
    loss = model(input_ids=ids, labels=ids).loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def test_lora_pushes_send_the_merged_model_once_then_only_targeted_tensors(tmp_path: Path):
    tokenizer = build_tokenizer()
    base = build_tiny_model(tokenizer, seed=0)
    base.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    config = RolloutServiceConfig(
        model=str(tmp_path / "model"),
        server=ServerConfig(port=0, grace_seconds=1),
        reward=RewardSettings(address="127.0.0.1:1", timeout_s=1, attempts=1, backoff_s=0.01),
    )
    policy = peft.get_peft_model(
        base, peft.LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"])
    )
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=0.05)

    async def scenario():
        async with running_rollout(config) as rollout:
            pusher = WeightPusher(
                [rollout.server.address], deadline_s=30, selection=select_for(policy, "merged")
            )
            figures = []
            try:
                for version in (1, 2):
                    lora_step(policy, optimizer, seed=version)
                    behind = await pusher.push(policy.state_dict(), version)
                    assert behind == []
                    figures.append(pusher.metrics())
                sampling = SamplingParams(max_new_tokens=8, temperature=0.0)
                served = await rollout.generator.generate([PROMPT], 1, sampling)
                served_model = copy.deepcopy(rollout.generator._model)
            finally:
                await pusher.close()
            return figures, served[0][0], served_model

    figures, completion, served_model = asyncio.run(scenario())
    merged = copy.deepcopy(policy).merge_and_unload().eval()
    ids = torch.tensor([PROMPT])
    with torch.no_grad():
        torch.testing.assert_close(served_model.eval()(ids).logits, merged(ids).logits, rtol=1e-5, atol=1e-5)
        greedy = merged.generate(ids, max_new_tokens=8, do_sample=False, eos_token_id=None)
    assert completion.weight_version == 2
    assert completion.token_ids == greedy[0, len(PROMPT) :].tolist()[: len(completion.token_ids)]
    first, second = figures
    unique = without_aliases(merged.state_dict())  # a tied embedding goes once
    assert len(unique) < len(merged.state_dict())
    full_bytes = sum(t.numel() * t.element_size() for t in unique.values())
    assert first["push/bytes"] == full_bytes and first["push/tensors"] == len(unique)
    layers = merged.config.num_hidden_layers
    assert second["push/tensors"] == 3 * layers  # the three targeted modules of every layer
    state = merged.state_dict()
    targeted = [n for n in state if n.endswith(("q_proj.weight", "v_proj.weight", "down_proj.weight"))]
    assert second["push/bytes"] == sum(state[n].numel() * 4 for n in targeted)
    assert second["push/bytes"] < first["push/bytes"] / 2


def test_adapter_pushes_reach_sglang_as_a_peft_adapter_that_peft_loads_back(tmp_path: Path):
    tokenizer = build_tokenizer()
    base = build_tiny_model(tokenizer, seed=0)
    base.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    targets = ["q_proj", "v_proj", "down_proj"]
    policy = peft.get_peft_model(
        copy.deepcopy(base), peft.LoraConfig(r=4, lora_alpha=16, target_modules=targets)
    )
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=0.05)
    lora_step(policy, optimizer, seed=1)
    with StandinServer() as server:
        server.state.lora = LoraState(enabled=True, max_rank=8, target_modules=targets)
        config = RolloutServiceConfig(
            model=str(tmp_path / "model"),
            generator="sglang",
            sglang=SGLangSettings(urls=[server.url], weight_dir=tmp_path / "w"),
            server=ServerConfig(port=0, grace_seconds=1),
            reward=RewardSettings(address="127.0.0.1:1", timeout_s=1, attempts=1, backoff_s=0.01),
        )

        async def scenario():
            async with running_rollout(config) as rollout:
                pusher = WeightPusher(
                    [rollout.server.address], deadline_s=30, selection=select_for(policy, "adapter")
                )
                try:
                    behind = await pusher.push(policy.state_dict(), 1)
                finally:
                    await pusher.close()
                return behind, rollout.generator.info().weight_version

        behind, version = asyncio.run(scenario())
        loaded = dict(server.state.lora.loaded)
    assert behind == [] and version == 1 and list(loaded) == ["grpo-lora-v1"]
    sent = peft.get_peft_model_state_dict(policy)  # peft's own saved names and values
    assert sorted(loaded["grpo-lora-v1"].tensors) == sorted(sent)
    assert all(torch.equal(loaded["grpo-lora-v1"].tensors[n], t) for n, t in sent.items())
    served = peft.PeftModel.from_pretrained(copy.deepcopy(base), loaded["grpo-lora-v1"].path).eval()
    ids = torch.tensor([PROMPT])
    with torch.no_grad():
        torch.testing.assert_close(served(ids).logits, policy.eval()(ids).logits, rtol=1e-5, atol=1e-5)
