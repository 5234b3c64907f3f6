"""Check grpo-rollout's `sglang` backend against a real SGLang server on a GPU.

    uv sync --extra sglang   # or: uv pip install 'grpo-rollout[sglang]'
    uv run python benchmarks/gpu/sglang_check.py --model /path/to/Qwen2.5-0.5B-Instruct
    uv run python benchmarks/gpu/sglang_check.py --model DIR --sglang-url http://127.0.0.1:30000

The tests in packages/rollout run this backend against a stand-in server; this script is where the
real thing is checked. The SGLang path counts as verified only on machines where this has passed.
`--model` must be a local Hugging Face checkpoint directory (the service reads its config,
tokenizer and safetensors headers; the GPU box may have no network). Without `--sglang-url` the
script launches `python -m sglang.launch_server` itself, exactly as `grpo-rollout serve` does.

Checks (each prints PASS/FAIL; the exit code is the number of failures):
 1. generate: n completions per prompt, logprobs paired with tokens, finish reasons, version 0;
 2. greedy groups are n identical copies; seeded sampling is reproducible, different seeds differ;
 3. logprob definition: SGLang's sampled-token logprobs at temperature 0.7 with top_k 20 match
    transformers' log_softmax(logits / 0.7) *before* filtering (and not the filtered renormalised one);
 4. update_weights_from_disk through pause/continue: perturbed weights change greedy outputs and every
    sample reports weight_version 1; restoring the originals as version 2 restores the outputs;
 5. a bad tensor (wrong shape) is refused before the server sees it;
 6. throughput: completion tokens/s for 64 prompts x 8 samples x 256 tokens (a figure, not a check).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import torch
from grpo_rollout.backends.contract import SamplingParams, WeightUpdateError
from grpo_rollout.backends.sglang.config import SGLangConfig
from grpo_rollout.backends.sglang.generator import SGLangGenerator
from grpo_rollout.backends.sglang.launcher import LaunchSettings, SGLangProcess
from grpo_rollout.backends.sglang.model_facts import read_model_facts
from grpo_rollout.prompt_encoding import PromptEncoder
from safetensors.torch import load_file

PROMPTS = [
    "What is 17 * 23? Put the final answer in \\boxed{}.",
    "Natalia sold clips to 48 friends in April and half as many in May. How many clips in total?",
]

failures: list[str] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"{'PASS' if ok else 'FAIL'}  {name}{'  -- ' + detail if detail else ''}", flush=True)
    if not ok:
        failures.append(name)


def load_state(model_dir: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        state.update(load_file(str(file)))
    return state


def reference_logprobs(model, prompt: list[int], tokens: list[int], temperature: float, top_k: int):
    """(unfiltered, filtered) logprobs of `tokens` after `prompt` under transformers."""
    ids = torch.tensor([prompt + tokens], device=model.device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float() / temperature
    index = torch.tensor(tokens, device=model.device)[:, None]
    unfiltered = torch.log_softmax(logits, -1).gather(-1, index).squeeze(-1)
    kth = torch.topk(logits, top_k, -1).values[:, -1:]
    filtered = (
        torch.log_softmax(logits.masked_fill(logits < kth, float("-inf")), -1).gather(-1, index).squeeze(-1)
    )
    return unfiltered.cpu(), filtered.cpu()


async def run(args: argparse.Namespace) -> None:
    model_dir = Path(args.model)
    facts = read_model_facts(model_dir)
    encoder = PromptEncoder.from_pretrained(model_dir)
    prompts = [encoder.encode(text, chat=True) for text in PROMPTS]
    process = None
    urls = args.sglang_url
    if not urls:
        process = SGLangProcess(
            LaunchSettings(
                model_path=str(model_dir),
                sglang=SGLangConfig(
                    mem_fraction_static=args.mem_fraction, extra_args=["--dtype", args.dtype]
                ),
                log_file=Path(args.log),
            )
        )
        urls = [await process.start(timeout_s=args.startup_timeout)]
    settings = SGLangConfig(urls=urls, weight_dir=Path(args.weight_dir))
    generator = await SGLangGenerator.connect(str(model_dir), facts, urls, settings)
    try:
        # 1. generate
        groups = await generator.generate(
            prompts, 4, SamplingParams(max_new_tokens=64, temperature=1.0, seed=1)
        )
        shapes_ok = all(
            len(g) == 4 and all(len(c.token_ids) == len(c.logprobs) > 0 for c in g) for g in groups
        )
        reasons = {c.finish_reason.value for g in groups for c in g}
        check(
            "generate returns n completions with paired logprobs",
            shapes_ok,
            f"finish reasons {sorted(reasons)}",
        )
        check("samples report weight_version 0", {c.weight_version for g in groups for c in g} == {0})
        check("logprobs are <= 0", all(lp <= 0 for g in groups for c in g for lp in c.logprobs))

        # 2. greedy and seeds
        greedy = SamplingParams(max_new_tokens=48, temperature=0.0)
        before = await generator.generate(prompts, 3, greedy)
        check(
            "greedy copies of a prompt agree", all(len({tuple(c.token_ids) for c in g}) == 1 for g in before)
        )
        seeded = SamplingParams(max_new_tokens=48, temperature=1.0, seed=123)
        first = await generator.generate(prompts, 3, seeded)
        again = await generator.generate(prompts, 3, seeded)
        other = await generator.generate(
            prompts, 3, SamplingParams(max_new_tokens=48, temperature=1.0, seed=7)
        )
        tokens = lambda result: [[c.token_ids for c in g] for g in result]  # noqa: E731
        check("same sampling_seed reproduces", tokens(first) == tokens(again))
        check("another seed differs", tokens(first) != tokens(other))
        check("n seeded samples of one prompt differ", len({tuple(c.token_ids) for c in first[0]}) > 1)

        # 3. logprob definition
        from transformers import AutoModelForCausalLM

        dtype = getattr(torch, args.dtype)
        reference = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to("cuda").eval()
        sampled = await generator.generate(
            prompts, 2, SamplingParams(max_new_tokens=32, temperature=0.7, top_k=20, seed=5)
        )
        errors_unfiltered, errors_filtered = [], []
        for prompt, group in zip(prompts, sampled, strict=True):
            for completion in group:
                unfiltered, filtered = reference_logprobs(reference, prompt, completion.token_ids, 0.7, 20)
                got = torch.tensor(completion.logprobs)
                errors_unfiltered.append((got - unfiltered).abs().mean().item())
                errors_filtered.append((got - filtered).abs().mean().item())
        mean_unfiltered = sum(errors_unfiltered) / len(errors_unfiltered)
        mean_filtered = sum(errors_filtered) / len(errors_filtered)
        check(
            "logprobs = log_softmax(logits / T) before top-k",
            mean_unfiltered < args.logprob_tolerance and mean_unfiltered < mean_filtered,
            f"mean |diff| unfiltered {mean_unfiltered:.4f}, filtered {mean_filtered:.4f} ({args.dtype})",
        )
        del reference
        torch.cuda.empty_cache()

        # 4. weights from disk
        original = load_state(model_dir)
        perturbed = dict(original)
        perturbed["model.norm.weight"] = original["model.norm.weight"] * -1.0
        gigabytes = sum(t.numel() * t.element_size() for t in perturbed.values()) / 1e9
        started = time.perf_counter()
        await generator.load_weights(perturbed, version=1)
        update_seconds = time.perf_counter() - started
        changed = await generator.generate(prompts, 3, greedy)
        check(
            "update_weights_from_disk changes greedy outputs",
            tokens(changed) != tokens(before),
            f"{gigabytes:.2f} GB written and loaded in {update_seconds:.1f} s",
        )
        check(
            "samples after the update report weight_version 1",
            {c.weight_version for g in changed for c in g} == {1},
        )
        await generator.load_weights(original, version=2)
        restored = await generator.generate(prompts, 3, greedy)
        check("restoring the weights restores greedy outputs", tokens(restored) == tokens(before))
        check("generator version is 2", generator.info().weight_version == 2)

        # 5. bad tensors
        bad = {"model.norm.weight": torch.zeros(3, dtype=original["model.norm.weight"].dtype)}
        try:
            await generator.load_weights(bad, version=3)
            check("wrong shape refused", False, "was accepted")
        except WeightUpdateError as exc:
            check("wrong shape refused", generator.info().weight_version == 2, str(exc))

        # 6. throughput
        many = [prompts[i % 2] for i in range(64)]
        started = time.perf_counter()
        result = await generator.generate(
            many, 8, SamplingParams(max_new_tokens=256, temperature=1.0, seed=0)
        )
        seconds = time.perf_counter() - started
        count = sum(len(c.token_ids) for g in result for c in g)
        print(
            f"INFO  throughput: {count} completion tokens in {seconds:.1f} s = {count / seconds:.0f} tokens/s"
        )
    finally:
        await generator.close()
        if process is not None:
            process.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="local Hugging Face checkpoint directory")
    parser.add_argument("--sglang-url", action="append", help="running SGLang worker(s); default: launch one")
    parser.add_argument("--weight-dir", default="/tmp/grpo-sglang-check-weights")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--mem-fraction", type=float, default=0.6)
    parser.add_argument("--logprob-tolerance", type=float, default=0.05, help="mean |diff| allowed (bf16)")
    parser.add_argument("--startup-timeout", type=float, default=600)
    parser.add_argument("--log", default="/tmp/sglang-check-server.log")
    args = parser.parse_args()
    asyncio.run(run(args))
    print(f"{len(failures)} failure(s)" + (f": {failures}" if failures else ""))
    return len(failures)


if __name__ == "__main__":
    sys.exit(main())
