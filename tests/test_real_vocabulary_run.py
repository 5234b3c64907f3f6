"""The whole loop with a real-size vocabulary: `grpo train` and its own reward and rollout processes
on a ~10M-parameter Qwen2 whose 151,936-entry BPE tokenizer (grpo_common.bpe_tokenizer) makes the
embedding 97% of it, so everything that grows with the vocabulary (lm_head chunks, the reference
model, the push of a tied embedding, the sampler's logits) runs at the size real tokenizers give.
The deadlines are the defaults: none may fire."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from grpo_common.bpe_tokenizer import QWEN2_VOCAB_SIZE, build_bpe_tokenizer, save_bpe_tokenizer
from grpo_learner.local.service_processes import find_executable
from grpo_learner.monitoring.metrics import read_metrics
from transformers import AutoModelForCausalLM, Qwen2Config

pytestmark = pytest.mark.slow


def write_model(directory: Path) -> int:
    """A ~10M-parameter Qwen2 (hidden 64: the embedding alone is 151,936 x 64) and its tokenizer."""
    tokenizer = build_bpe_tokenizer()
    config = Qwen2Config(
        vocab_size=QWEN2_VOCAB_SIZE,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(directory)
    save_bpe_tokenizer(directory)
    return sum(p.numel() for p in model.parameters())


def test_two_steps_with_a_qwen_sized_vocabulary_through_real_services(tmp_path: Path) -> None:
    parameters = write_model(tmp_path / "model")
    assert 9e6 < parameters < 11e6
    data = tmp_path / "problems.jsonl"
    question = "Alice has {a} apples and buys {b} more. How many now?"
    rows = [{"question": question.format(a=a, b=a + 3), "answer": str(2 * a + 3)} for a in range(8)]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    run_dir = tmp_path / "run"
    settings = [
        "data.apply_chat_template=true",  # the tokenizer's Qwen2.5 template, system prompt and all
        "rollout.group_size=2", "rollout.prompts_per_step=2", "rollout.sampling.max_new_tokens=8",
        "loss.beta=0.04",  # a reference model: a second vocabulary-sized embedding
        "train.device=cpu", "local_services.reward_workers=1", "tensorboard=false",
    ]  # fmt: skip
    command = [
        find_executable("grpo"), "train", "--model", str(tmp_path / "model"), "--data", str(data),
        "--run-dir", str(run_dir), "--max-steps", "2", "--no-progress",
    ]  # fmt: skip
    for setting in settings:
        command += ["--set", setting]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_metrics(run_dir)
    assert [r["policy_version"] for r in records] == [1, 2]
    for record in records:
        assert record["push/services_behind"] == 0  # the push deadline did not fire
        assert record["push/bytes"] == parameters * 4  # fp32, the tied embedding once
        assert record["num_groups"] == 2 and record["kl"] >= 0
        assert record["sampler/logprob_abs_diff"] < 1e-3  # fp32 sampler and fp32 learner agree
    rollout_log = (run_dir / "services" / "rollout.log").read_text()
    assert "weights updated to version 2" in rollout_log
    assert " is behind " not in result.stderr  # the pusher names any service it gave up waiting for
