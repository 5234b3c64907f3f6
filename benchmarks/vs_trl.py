"""TRL's GRPOTrainer against `grpo train` on the same model, data and step shape, in the same run.

    uv run --group bench python benchmarks/vs_trl.py            # 3 shapes x 3 alternating pairs
    uv run --group bench python benchmarks/vs_trl.py --quick    # 1 pair, few steps: a smoke run
    uv run --group bench python benchmarks/vs_trl.py --shapes long --pairs 2 --staleness 0,1
    uv run --group bench python benchmarks/vs_trl.py --shapes uneven   # completions of 4 to 256 tokens

Per shape one model (Qwen2 from a config, random weights, the embedded default's character
tokenizer) and one dataset (the embedded arithmetic problems) are written once; then TRL and ours
run alternately, each in its own process so neither inherits the other's threads or caches:

- TRL: `GRPOTrainer` on CPU with transformers generation, `num_generations = G`, a batch of
  `prompts x G` completions per step (`per_device_train_batch_size`), beta 0, one iteration;
  reward: the same verifier our reward service runs (`grpo_reward.Verifier`), in process.
- ours: `grpo train` with its own local reward and rollout services (child processes on
  loopback gRPC, as a user gets them), at each `--staleness` given.

Seconds per step are the median gap between consecutive steps, the first step left out; the
ratio is ours / TRL, per pair, and its median over pairs is the figure to quote (the machine is
shared: single pairs move a lot). Our phase split comes from metrics.jsonl's `timing/*` keys when
the learner logs them. Both sample at temperature 1 with no top-k / top-p.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from grpo_runs import RunShape, phase_line, run_grpo, write_assets  # benchmarks/grpo_runs.py
from model_shapes import ModelShape, machine_description  # benchmarks/model_shapes.py
from results_file import BENCH_GROUP, Report, add_record_flag  # benchmarks/results_file.py
from transformers import AutoModelForCausalLM
from trl_runs import TrlRun, train_with_trl  # benchmarks/trl_runs.py
from uneven_workload import MAX_NEW_TOKENS, build_workload  # benchmarks/uneven_workload.py

SECTION = "Against TRL: seconds per step"  # of benchmarks/RESULTS.md, written with --record

# The table: 3.2M params / 32 new tokens, 0.8M (the embedded default's model) / 12 new
# tokens; and GSM8K-like prompt lengths (>= 128 prompt tokens), where prompt cost matters.
SMALL = ModelShape("3m", hidden=256, layers=4, heads=4, kv_heads=2, intermediate=768, vocab=0)
TINY = ModelShape("1m", hidden=128, layers=4, heads=4, kv_heads=2, intermediate=384, vocab=0)
SHAPES = {
    "3m": RunShape("3m", SMALL, max_new_tokens=32),
    "1m": RunShape("1m", TINY, max_new_tokens=12),
    "long": RunShape("long", TINY, max_new_tokens=32, prompt_tokens=160),
    # benchmarks/uneven_workload.py: a warm model whose completions run from a few tokens to 256
    "uneven": RunShape("uneven", TINY, max_new_tokens=MAX_NEW_TOKENS, max_positions=64 + MAX_NEW_TOKENS),
}
# Shapes trained from a warm model rather than random weights: its builder writes directory/model and
# directory/problems.jsonl (a supervised warm-up: minutes on a loaded box, so asked for by name only).
WARM_ASSETS = {"uneven": build_workload}
DEFAULT_SHAPES = ",".join(name for name in SHAPES if name not in WARM_ASSETS)


def trl_worker(directory: Path, shape: RunShape, steps: int, threads: int | None, output: Path) -> None:
    """Run TRL in this process and write {"seconds_per_step": ...} to `output`."""
    import torch
    from transformers import TrainerCallback

    if threads:
        torch.set_num_threads(threads)
    stamps: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            stamps.append(time.perf_counter())

    run = TrlRun(
        model_dir=directory / "model",
        problems=directory / "problems.jsonl",
        steps=steps,
        group_size=shape.group_size,
        prompts_per_step=shape.prompts_per_step,
        max_new_tokens=shape.max_new_tokens,
        lr=1e-5,
        temperature=1.0,
    )
    train_with_trl(run, [StepClock()])
    gaps = [b - a for a, b in itertools.pairwise(stamps)][1:]
    output.write_text(json.dumps({"seconds_per_step": statistics.median(gaps), "steps_timed": len(gaps)}))


def run_trl(directory: Path, shape: RunShape, steps: int, threads: int | None) -> float:
    output = directory / "trl.json"
    output.unlink(missing_ok=True)
    command = [sys.executable, __file__, "--trl-worker", str(directory), "--shapes", shape.name]
    command += ["--steps", str(steps)] + (["--trl-threads", str(threads)] if threads else [])
    with (directory / "trl.log").open("wb") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=3600).returncode
    if code != 0:
        tail = (directory / "trl.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"TRL exited with {code}; its log ends with:\n{tail}")
    return json.loads(output.read_text())["seconds_per_step"]


def compare(
    shape: RunShape,
    pairs: int,
    steps: int,
    stalenesses: list[int],
    trl_threads: list[int | None],
    root: Path,
) -> None:
    """Per pair: TRL once per thread setting, then ours once per staleness; every ours / TRL ratio of
    the pair (so one set of our runs is compared with TRL at each thread setting, in the same minutes)."""
    directory = root / shape.name
    directory.mkdir()
    if shape.name in WARM_ASSETS:
        model_dir = WARM_ASSETS[shape.name](directory).model
        params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(model_dir).parameters())
    else:
        params = write_assets(shape, directory)
    prompt = f"prompts of {shape.prompt_tokens}+ tokens" if shape.prompt_tokens else "short prompts"
    print(
        f"\n== {shape.name}: {params / 1e6:.2f}M params, {shape.prompts_per_step} prompts x G "
        f"{shape.group_size}, {shape.max_new_tokens} new tokens, {prompt}, {steps} steps per run",
        flush=True,
    )
    ratios: dict[tuple[int | None, int], list[float]] = {
        (threads, k): [] for threads in trl_threads for k in stalenesses
    }
    for pair in range(pairs):
        trl = {threads: run_trl(directory, shape, steps, threads) for threads in trl_threads}
        line = [
            f"pair {pair + 1}: " + ", ".join(f"TRL ({_threads(t)}) {v:.3f} s/step" for t, v in trl.items())
        ]
        for staleness in stalenesses:
            run_dir = directory / f"ours-s{staleness}-{pair}"
            settings = (f"rollout.max_staleness={staleness}", "local_services.reward_workers=1")
            ours = run_grpo(shape, directory, run_dir, steps, *settings)
            for threads, trl_step in trl.items():
                ratios[threads, staleness].append(ours.seconds_per_step / trl_step)
            against = ", ".join(
                f"{ours.seconds_per_step / v:.2f}x TRL ({_threads(t)})" for t, v in trl.items()
            )
            line.append(
                f"ours (max_staleness {staleness}) {ours.seconds_per_step:.3f} s/step "
                f"= {against} [{phase_line(ours)}]"
            )
        print("; ".join(line), flush=True)
    for (threads, staleness), values in ratios.items():
        print(
            f"{shape.name}: ours / TRL ({_threads(threads)}) at max_staleness {staleness}: median "
            f"{statistics.median(values):.2f}x over {len(values)} pair(s) "
            f"(each: {', '.join(f'{v:.2f}' for v in values)})",
            flush=True,
        )


def _threads(threads: int | None) -> str:
    return f"{threads} torch thread{'s' if threads != 1 else ''}" if threads else "default torch threads"


def parse_threads(text: str) -> list[int | None]:
    """`default,1` -> [None, 1]: None leaves torch's default (one thread per core)."""
    return [None if t.strip() == "default" else int(t) for t in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shapes", default=DEFAULT_SHAPES, help=f"comma-separated, of {sorted(SHAPES)}")
    parser.add_argument("--pairs", type=int, default=3, help="alternating TRL / ours runs per shape")
    parser.add_argument("--steps", type=int, default=12, help="training steps per run (the first is warm-up)")
    parser.add_argument(
        "--staleness", default="0,1", help="our rollout.max_staleness values, comma-separated"
    )
    parser.add_argument("--quick", action="store_true", help="1 pair of 4 steps per shape")
    parser.add_argument(
        "--trl-threads",
        default="default",
        help="torch threads of the TRL process, comma-separated to compare with several in the same pairs "
        "(`default`: torch's, one per core; e.g. `default,1`); on a loaded machine one thread per process "
        "is what keeps spinning thread pools from slowing every process down",
    )
    parser.add_argument("--trl-worker", type=Path, help=argparse.SUPPRESS)
    add_record_flag(parser, SECTION)
    args = parser.parse_args()
    if args.trl_worker is not None:
        threads = parse_threads(args.trl_threads)[0]
        trl_worker(args.trl_worker, SHAPES[args.shapes], args.steps, threads, args.trl_worker / "trl.json")
        return
    with Report(SECTION, runner=BENCH_GROUP) as report:
        pairs, steps = (1, 4) if args.quick else (args.pairs, args.steps)
        trl_threads = parse_threads(args.trl_threads)
        described = " / ".join(_threads(t) for t in trl_threads)
        print(machine_description(f"TRL {described}; ours: see grpo train's CPU split"), flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            for name in args.shapes.split(","):
                stalenesses = [int(s) for s in args.staleness.split(",")]
                compare(SHAPES[name], pairs, steps, stalenesses, trl_threads, Path(tmp))
    if args.record:
        report.save(sys.argv)


if __name__ == "__main__":
    main()
