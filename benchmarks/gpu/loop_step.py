"""The whole GRPO loop on one GPU: seconds per step, the phase split, learner tokens/s and MFU.

On the GPU machine, from the repository root (torch, transformers, grpcio and sympy installed; no
network needed, nothing is downloaded):

    python benchmarks/gpu/loop_step.py                 # ~0.5B Qwen2 shape; about 2-4 minutes
    python benchmarks/gpu/loop_step.py --tiny          # tiny shape on CPU: a smoke run (~1 minute)
    OUT=/some/dir python benchmarks/gpu/loop_step.py   # also writes OUT/loop_step.json + logs

It needs no install: it puts packages/*/src on the path (for itself and the service processes it
starts) and runs `grpo`, `grpo-reward`, `grpo-rollout` through small shims when they are not
installed. It first checks that every module the services import is there and names the missing
ones (`pip install pydantic pyyaml rich httpx grpcio-health-checking grpcio-reflection protobuf`
or `pip install -e packages/common -e packages/reward -e packages/rollout -e packages/learner`).

What runs is exactly production's shape on one machine: `grpo train` with its own local reward and
rollout services as processes on loopback gRPC, the rollout service's `hf` generator on CUDA in
bf16, the learner on the same GPU (fp32 master weights, bf16 autocast), weights pushed over gRPC
in bf16 after every step. The model is Qwen2-0.5B's shape built from a config (24 layers, hidden
896, 14 heads / 2 KV heads, MLP 4864, vocabulary 151936, tied embeddings; random weights), with
a character tokenizer padded to that vocabulary; 8 prompts x 8 completions per step, prompts of
~128 tokens, 128 new tokens (random weights rarely stop early).

Figures: s/step (median gap between steps, the first left out), the learner's `timing/*` phases
when it logs them, learner tokens/s (prompt + completion tokens trained per second of update), and
MFU = 6 x parameters x learner tokens/s / the GPU's dense bf16 peak (`--peak-tflops`, default
989 for H100/H200), which ignores attention FLOPs and so slightly understates the true figure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "packages" / name / "src" for name in ("common", "reward", "rollout", "learner")]
COMMANDS = {"grpo": "grpo_learner.cli", "grpo-reward": "grpo_reward.cli", "grpo-rollout": "grpo_rollout.cli"}
NEEDED = ["torch", "transformers", "grpc", "sympy", "pydantic", "yaml", "rich", "httpx", "google.protobuf"]
NEEDED += ["grpc_health.v1", "grpc_reflection.v1alpha", "safetensors", "numpy"]


def use_checkout(shims: Path) -> None:
    """Make the checkout importable here and in child processes; shim console scripts not installed."""
    sys.path[:0] = [str(s) for s in SOURCES]
    sys.path.insert(0, str(ROOT / "benchmarks"))
    os.environ["PYTHONPATH"] = os.pathsep.join([*map(str, SOURCES), os.environ.get("PYTHONPATH", "")])
    shims.mkdir(parents=True, exist_ok=True)
    for command, module in COMMANDS.items():
        if Path(sys.executable).with_name(command).exists() or shutil.which(command):
            continue
        shim = shims / command
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "import sys; from {module} import main; '
                        f'sys.exit(main())" "$@"\n')  # fmt: skip
        shim.chmod(0o755)
    os.environ["PATH"] = f"{shims}{os.pathsep}{os.environ['PATH']}"


def missing_modules() -> list[str]:
    missing = []
    for name in NEEDED:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(name)
    return missing


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="a tiny shape on CPU (no GPU needed)")
    parser.add_argument("--steps", type=int, help="training steps (default 10; --tiny 5)")
    parser.add_argument("--new-tokens", type=int, help="max new tokens (default 128; --tiny 8)")
    parser.add_argument("--staleness", type=int, default=1, help="rollout.max_staleness")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU")
    parser.add_argument("--timeout-s", type=float, default=420.0, help="longest the training run may take")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="loop-step-"))
    use_checkout(work / "bin")
    if missing := missing_modules():
        print(f"missing Python modules: {', '.join(missing)}; see this script's docstring", file=sys.stderr)
        return 2

    import torch
    from grpo_runs import RunShape, phase_line, run_grpo, write_assets  # benchmarks/grpo_runs.py
    from model_shapes import ModelShape, machine_description  # benchmarks/model_shapes.py

    if args.tiny:
        tiny = ModelShape("tiny", hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=0)
        shape = RunShape("tiny", tiny, args.new_tokens or 8, group_size=4, prompts_per_step=4)
        steps, device = args.steps or 5, "cpu"
        settings = ["train.device=cpu", "local_services.device=cpu", "local_services.torch_threads=1"]
    else:
        if not torch.cuda.is_available():
            print("no CUDA device here; run with --tiny for the CPU smoke run", file=sys.stderr)
            return 2
        qwen = ModelShape(
            "qwen2-0.5b", hidden=896, layers=24, heads=14, kv_heads=2, intermediate=4864, vocab=151936
        )
        shape = RunShape("qwen2-0.5b", qwen, args.new_tokens or 128, prompt_tokens=128, max_positions=1024)
        steps, device = args.steps or 10, "cuda"
        settings = [
            "train.device=cuda", "train.micro_batch_size=32", "local_services.device=cuda",
            "local_services.dtype=bfloat16", "push.dtype=bfloat16",
        ]  # fmt: skip
    settings.append(f"rollout.max_staleness={args.staleness}")
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "none (CPU)"
    print(machine_description(f"GPU: {gpu}"), flush=True)

    params = write_assets(shape, work / "assets", dtype=torch.bfloat16 if device == "cuda" else torch.float32)
    print(
        f"{shape.name}: {params / 1e6:.1f}M params; {shape.prompts_per_step} prompts x {shape.group_size}, "
        f"{shape.prompt_tokens or 'short'} prompt tokens, {shape.max_new_tokens} new tokens, {steps} steps, "
        f"max_staleness {args.staleness}",
        flush=True,
    )
    run_dir = work / "run"
    try:
        figures = run_grpo(shape, work / "assets", run_dir, steps, *settings, timeout_s=args.timeout_s)
    finally:
        keep_logs(run_dir)
    mfu = 6 * params * figures.tokens_per_second / (args.peak_tflops * 1e12) if device == "cuda" else None
    print(f"s/step {figures.seconds_per_step:.3f} (median of {figures.steps_timed} steps)")
    print(f"phases: {phase_line(figures)}")
    mfu_text = f"{mfu * 100:.1f}% of {args.peak_tflops:.0f} TFLOP/s" if mfu is not None else "n/a on CPU"
    print(f"learner tokens/s {figures.tokens_per_second:.0f}; MFU {mfu_text}")
    write_out(
        {
            "shape": shape.name,
            "parameters": params,
            "gpu": gpu,
            "steps": steps,
            "max_staleness": args.staleness,
            "seconds_per_step": figures.seconds_per_step,
            "phases": figures.phases,
            "learner_tokens_per_second": figures.tokens_per_second,
            "mfu": mfu,
        }
    )
    return 0


def keep_logs(run_dir: Path) -> None:
    """Copy metrics and service/learner logs to $OUT (when set) for a look after the run."""
    out = os.environ.get("OUT")
    if not out:
        return
    for path in [run_dir / "metrics.jsonl", run_dir / "learner.log", *run_dir.glob("services/*.log")]:
        if path.exists():
            shutil.copy(path, Path(out) / path.name)


def write_out(figures: dict) -> None:
    out = os.environ.get("OUT")
    if out:
        (Path(out) / "loop_step.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
