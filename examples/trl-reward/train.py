"""GRPO with TRL's GRPOTrainer, rewarded by this project's verifier (`grpo_reward.integrations.trl`).

    uv run --group bench python examples/trl-reward/train.py                      # offline: a tiny model
    uv run --group bench python examples/trl-reward/train.py --model Qwen/Qwen2.5-0.5B-Instruct \
        --data gsm8k.jsonl

Without --model it builds the embedded default's tiny model and tokenizer in code and trains on its
synthetic arithmetic (no download), so the script runs anywhere in a few minutes of CPU. With --model
and a JSONL of {"prompt"/"question", "answer"} rows (GSM8K's "... #### 42" answers work as they
are), it is the same script on a real model. The verifier grades in its own worker processes, one
`Verifier` for the whole run; `correctness` and `format` are TRL reward functions logged as
rewards/<name>/mean.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from datasets import Dataset
from grpo_reward.integrations.trl import VerifierRewards
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer


def tiny_model_and_data() -> tuple[object, object, list[dict[str, str]]]:
    """The embedded default's tiny Qwen2-shaped model, char tokenizer and arithmetic problems."""
    from grpo_learner.embedded.model import build_tiny_model
    from grpo_learner.embedded.task import split_problems
    from grpo_learner.embedded.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    train, _ = split_problems(seed=0)
    rows = [{"prompt": p.prompt, "answer": p.reference} for p in train]
    return build_tiny_model(tokenizer, seed=0), tokenizer, rows


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--model", help="checkpoint directory or hub id (default: the tiny model, offline)")
    parser.add_argument("--data", type=Path, help='JSONL with "prompt" (or "question") and "answer"')
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--prompts-per-step", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=12)
    args = parser.parse_args()

    if args.model:
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        model = AutoModelForCausalLM.from_pretrained(args.model)
        if args.data is None:
            parser.error("--model needs --data")
        lines = args.data.read_text().splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
        rows = [{"prompt": r.get("prompt") or r["question"], "answer": r["answer"]} for r in rows]
    else:
        model, tokenizer, rows = tiny_model_and_data()

    with VerifierRewards(workers=1) as rewards, tempfile.TemporaryDirectory() as out_dir:
        config = GRPOConfig(
            output_dir=out_dir,
            per_device_train_batch_size=args.prompts_per_step * args.group_size,
            num_generations=args.group_size,
            max_completion_length=args.max_new_tokens,
            max_steps=args.max_steps,
            learning_rate=1e-4,
            beta=0.0,
            logging_steps=1,
            report_to="none",
            save_strategy="no",
            use_cpu=not args.model,
            disable_tqdm=True,
            seed=0,
            reward_weights=[1.0, 0.1],  # correctness, format
        )
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=[rewards.correctness, rewards.format],
            args=config,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
        )
        trainer.train()
        for record in trainer.state.log_history:
            if "rewards/correctness/mean" in record:
                shown = {k: round(v, 3) for k, v in record.items() if k.startswith(("reward", "step"))}
                print(json.dumps(shown))


if __name__ == "__main__":
    main()
