"""One TRL GRPOTrainer run as vs_trl.py and vs_trl_gain.py configure it: TRL 1.16 on CPU, rewarded
by the verifier our reward service runs (`grpo_reward.Verifier`, in process), sampling at a given
temperature with no top-k / top-p, beta 0, one iteration, a batch of `prompts x G` completions per
step. Only the `bench` dependency group has TRL and `datasets`, so everything is imported inside.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TrlRun:
    """What differs between the benchmarks' TRL runs (the rest is fixed above)."""

    model_dir: Path
    problems: Path  # JSONL: question, answer
    steps: int
    group_size: int
    prompts_per_step: int
    max_new_tokens: int
    lr: float
    temperature: float
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    logging_steps: int = 1


def train_with_trl(run: TrlRun, callbacks: list[Any]) -> Any:
    """Train to the end and return the trainer (its `.model` is the trained policy)."""
    import torch
    from datasets import Dataset
    from grpo_reward.verifier import Verifier
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(run.model_dir)
    model = AutoModelForCausalLM.from_pretrained(run.model_dir, dtype=torch.float32)
    rows = [json.loads(line) for line in run.problems.read_text().splitlines()]
    dataset = Dataset.from_list([{"prompt": r["question"], "answer": r["answer"]} for r in rows])
    with Verifier(workers=1) as verifier, tempfile.TemporaryDirectory() as out_dir:
        verifier.wait_ready(timeout_s=60)

        def correctness(completions: list[str], answer: list[str], **_: object) -> list[float]:
            return [v.reward for v in verifier.verify_many(zip(completions, answer, strict=True))]

        config = GRPOConfig(
            output_dir=out_dir,
            per_device_train_batch_size=run.prompts_per_step * run.group_size,
            num_generations=run.group_size,
            gradient_accumulation_steps=1,
            max_completion_length=run.max_new_tokens,
            max_steps=run.steps,
            beta=0.0,
            num_iterations=1,
            loss_type="grpo",
            temperature=run.temperature,
            top_p=1.0,
            top_k=0,
            learning_rate=run.lr,
            lr_scheduler_type="constant_with_warmup" if run.warmup_steps else "constant",
            warmup_steps=run.warmup_steps,
            max_grad_norm=run.max_grad_norm,
            logging_steps=run.logging_steps,
            report_to="none",
            save_strategy="no",
            use_cpu=True,
            bf16=False,
            disable_tqdm=True,
            seed=0,
        )
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=correctness,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=callbacks,
        )
        trainer.train()
    return trainer
