"""Held-out gain per GRPO-second: TRL's GRPOTrainer and `grpo train` from the same warm checkpoint.

    uv run --group bench python benchmarks/vs_trl_gain.py                 # 400 steps, 2 alternating pairs
    uv run --group bench python benchmarks/vs_trl_gain.py --steps 100 --pairs 1 --staleness 1
    uv run --group bench python benchmarks/vs_trl_gain.py --trl-threads 1   # a loaded machine (vs_trl.py)

The warm checkpoint is the embedded default's (its character tokenizer, its 0.8M-parameter model,
its 500-step supervised warm-up on the training split), built once. From it TRL and ours each train
`--steps` GRPO steps on the same problems with the same settings (8 prompts x G 8, 12 new tokens,
temperature 0.7, `--lr` (5e-5) constant after 5 warm-up steps, grad-norm clip 1, beta 0, one iteration),
TRL in its own process and ours as `grpo train` with its local services at each `--staleness`
(`rollout.max_staleness`; 0: strictly on-policy, as TRL; 1: the next step's rollouts generate while
this one trains, their importance ratio clipped), alternating. Every model
(the warm one and each run's last) is then graded by the same greedy evaluator in this process
(the `hf` generator's sampling loop at temperature 0, the verifier on the 200 held-out problems).

GRPO-seconds are the training loop's wall time: TRL from `on_train_begin` to its last step, ours
from the first step's start (its log time minus its `timing/step`) to the last step's log time:
neither counts process start, model loading, service start-up or evaluation. The figure to quote
is gain (held-out points) per GRPO-second, ours / TRL, median over pairs, per staleness.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from grpo_runs import final_model, grpo_command, grpo_seconds  # benchmarks/grpo_runs.py
from model_shapes import machine_description  # benchmarks/model_shapes.py
from results_file import BENCH_GROUP, Report, add_record_flag  # benchmarks/results_file.py
from trl_runs import TrlRun, train_with_trl  # benchmarks/trl_runs.py
from vs_trl import SHAPES  # benchmarks/vs_trl.py

SECTION = "Against TRL: held-out gain per GRPO-second"  # of benchmarks/RESULTS.md, written with --record

SHAPE = SHAPES["1m"]  # the embedded default's model size, 12 new tokens, short prompts


@dataclass(frozen=True)
class GainSettings:
    """The GRPO settings both trainers get. The embedded default's lr (2e-4) is for its 32 prompts
    per step; at 8 prompts per step both trainers lost 10-20 held-out points with it in 400 steps."""

    steps: int
    lr: float
    warmup_steps: int = 5
    max_grad_norm: float = 1.0
    temperature: float = 0.7
    group_size: int = SHAPE.group_size
    prompts_per_step: int = SHAPE.prompts_per_step
    max_new_tokens: int = SHAPE.max_new_tokens


# A training run: (work directory, settings, its output directory) -> (its final model, GRPO-seconds)
Runner = Callable[[Path, GainSettings, Path], tuple[Path, float]]


def build_warm_checkpoint(directory: Path) -> Path:
    """The embedded default's warm-up model and its train / held-out problem files."""
    from grpo_learner.embedded.default_run import embedded_config, prepare_warm_model, write_heldout
    from grpo_learner.embedded.tasks import EmbeddedConfig

    embedded = EmbeddedConfig()
    config = embedded_config({"run_dir": str(directory)}, embedded)
    model_dir = prepare_warm_model(directory, config, embedded)
    train, heldout = embedded.embedded_task.split(config.train.seed)
    rows = (json.dumps({"question": p.prompt, "answer": p.reference}) for p in train)
    (directory / "train.jsonl").write_text("".join(f"{row}\n" for row in rows))
    write_heldout(directory / "heldout.jsonl", heldout)
    return model_dir


def greedy_accuracy(model_dir: Path, problems: Path, max_new_tokens: int) -> float:
    """Greedy accuracy of the model in `model_dir` on a (question, answer) file, graded by the verifier
    (benchmarks/uneven_loop.py grades its runs with it too)."""
    from grpo_reward.verifier import Verifier
    from grpo_rollout.backends.contract import SamplingParams
    from grpo_rollout.backends.hf.config import HFConfig
    from grpo_rollout.backends.hf.generator import HFGenerator
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    generator = HFGenerator.from_pretrained(model_dir, HFConfig())
    rows = [json.loads(line) for line in problems.read_text().splitlines()]
    prompts = [tokenizer(r["question"]).input_ids for r in rows]
    sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)
    groups = generator.generate_sync(prompts, 1, sampling)
    texts = [tokenizer.decode(g[0].token_ids, skip_special_tokens=True) for g in groups]
    with Verifier(workers=1) as verifier:
        verdicts = verifier.verify_many(zip(texts, (r["answer"] for r in rows), strict=True))
    return sum(v.correct for v in verdicts) / len(verdicts)


def trl_worker(directory: Path, settings: GainSettings, output: Path, threads: int | None) -> None:
    """Train with TRL from directory/warmup, save the model to output/model, time the loop."""
    import torch
    from transformers import AutoTokenizer, TrainerCallback

    if threads:
        torch.set_num_threads(threads)

    clock: dict[str, float] = {}

    class LoopClock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            clock["begin"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            clock["end"] = time.perf_counter()

    run = TrlRun(
        model_dir=directory / "warmup",
        problems=directory / "train.jsonl",
        steps=settings.steps,
        group_size=settings.group_size,
        prompts_per_step=settings.prompts_per_step,
        max_new_tokens=settings.max_new_tokens,
        lr=settings.lr,
        temperature=settings.temperature,
        warmup_steps=settings.warmup_steps,
        max_grad_norm=settings.max_grad_norm,
        logging_steps=50,
    )
    trainer = train_with_trl(run, [LoopClock()])
    trainer.model.save_pretrained(output / "model")
    AutoTokenizer.from_pretrained(directory / "warmup").save_pretrained(output / "model")
    (output / "timing.json").write_text(json.dumps({"grpo_seconds": clock["end"] - clock["begin"]}))


def run_trl(directory: Path, settings: GainSettings, output: Path, threads: int | None) -> tuple[Path, float]:
    output.mkdir(parents=True)
    command = [sys.executable, __file__, "--trl-worker", str(directory), "--out", str(output)]
    command += ["--settings", json.dumps(asdict(settings))]
    command += ["--trl-threads", str(threads)] if threads else []
    with (output / "trl.log").open("wb") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=7200).returncode
    if code != 0:
        tail = (output / "trl.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"TRL exited with {code}; its log ends with:\n{tail}")
    return output / "model", json.loads((output / "timing.json").read_text())["grpo_seconds"]


def run_ours(directory: Path, settings: GainSettings, run_dir: Path, staleness: int) -> tuple[Path, float]:
    from grpo_learner.monitoring.metrics import read_metrics

    flags = (
        f"rollout.max_staleness={staleness}",
        f"optim.lr={settings.lr}",
        f"optim.warmup_steps={settings.warmup_steps}",
        "optim.schedule=constant",
        f"optim.max_grad_norm={settings.max_grad_norm}",
        f"rollout.sampling.temperature={settings.temperature}",
        f"checkpoint.interval={settings.steps}",
        "local_services.reward_workers=1",
    )
    command = grpo_command(SHAPE, directory, run_dir, settings.steps, *flags)
    command[command.index("--model") + 1] = str(directory / "warmup")
    command[command.index("--data") + 1] = str(directory / "train.jsonl")
    run_dir.mkdir(parents=True)
    with (run_dir / "learner.log").open("wb") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=7200).returncode
    if code != 0:
        tail = (run_dir / "learner.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"grpo train exited with {code}; its log ends with:\n{tail}")
    records = [r for r in read_metrics(run_dir) if r["step"] >= 1]
    return final_model(run_dir), grpo_seconds(records)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=400, help="GRPO steps per run")
    parser.add_argument("--pairs", type=int, default=2, help="alternating TRL / ours runs")
    parser.add_argument("--lr", type=float, default=5e-5, help="both learning rates (constant after warm-up)")
    parser.add_argument("--staleness", default="0,1", help="our rollout.max_staleness values")
    parser.add_argument(
        "--trl-threads",
        type=int,
        help="torch threads of the TRL process (default: torch's, one per core); on a loaded machine "
        "one thread per process is what keeps spinning thread pools from slowing every process down",
    )
    parser.add_argument("--trl-worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    add_record_flag(parser, SECTION)
    args = parser.parse_args()
    if args.trl_worker is not None:
        trl_worker(args.trl_worker, GainSettings(**json.loads(args.settings)), args.out, args.trl_threads)
        return
    import torch

    # This process only warms the checkpoint up and grades models (the timed runs are processes of their
    # own, with their own threads): one thread, since two OpenMP threads crawled on a loaded 2-core box.
    torch.set_num_threads(1)
    with Report(SECTION, runner=BENCH_GROUP) as report:
        settings = GainSettings(steps=args.steps, lr=args.lr)
        trl_threads = f"TRL {args.trl_threads or 'default'} torch threads"
        print(machine_description(f"{trl_threads}; ours: see grpo train's CPU split"), flush=True)
        print(f"settings: {asdict(settings)}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            warm = build_warm_checkpoint(directory)
            heldout = directory / "heldout.jsonl"
            before = greedy_accuracy(warm, heldout, SHAPE.max_new_tokens)
            print(f"warm checkpoint: held-out greedy accuracy {before:.1%}", flush=True)
            stalenesses = [int(k) for k in args.staleness.split(",")]
            ratios: dict[int, list[float]] = {k: [] for k in stalenesses}
            for pair in range(args.pairs):
                runs: list[tuple[str, Runner]] = [
                    ("TRL", functools.partial(run_trl, threads=args.trl_threads))
                ]
                runs += [(f"ours-s{k}", functools.partial(run_ours, staleness=k)) for k in stalenesses]
                figures = {}
                for name, run in runs:
                    model_dir, seconds = run(directory, settings, directory / f"{name}-{pair}")
                    accuracy = greedy_accuracy(model_dir, heldout, SHAPE.max_new_tokens)
                    gain = (accuracy - before) * 100
                    figures[name] = gain / seconds
                    print(
                        f"pair {pair + 1}: {name}: {gain:+.1f} points in {seconds:.0f} GRPO-seconds "
                        f"({seconds / settings.steps:.3f} s/step) = {gain / seconds:.3f} points per second",
                        flush=True,
                    )
                for k in stalenesses:
                    ratio = figures[f"ours-s{k}"] / figures["TRL"] if figures["TRL"] > 0 else float("nan")
                    ratios[k].append(ratio)
                    print(
                        f"pair {pair + 1}: ours (max_staleness {k}) / TRL gain per GRPO-second: {ratio:.2f}x"
                    )
            for k, values in ratios.items():
                print(
                    f"ours (max_staleness {k}) / TRL gain per GRPO-second: "
                    f"median {statistics.median(values):.2f}x over {len(values)} pair(s) "
                    f"(each: {', '.join(f'{v:.2f}' for v in values)})",
                    flush=True,
                )
    if args.record:
        report.save(sys.argv)


if __name__ == "__main__":
    main()
