"""What vs_trl.py and gpu/loop_step.py share: the model and problems on disk, and one `grpo train` run.

- `write_assets`: a Qwen2-shaped model built from a config (random weights, nothing downloaded)
  with the embedded default's character tokenizer (padded with filler tokens up to the shape's
  vocabulary when it is larger, so a 152k-vocabulary shape costs what it costs), and the embedded
  arithmetic problems as JSONL (`question`, `answer`), each question optionally led by a preamble
  so that prompts reach a given length in tokens.
- `run_grpo`: `grpo train` as a user runs it, with its own local reward and rollout services as
  child processes, and its figures read back from `metrics.jsonl`: seconds per step (the median
  gap between consecutive steps' log times, the first step left out as warm-up), the mean of
  every `timing/*` key the learner logs, and the learner's tokens/s;
- `grpo_seconds`, `final_model`: a run's training-loop wall time and its last checkpoint's model (the
  held-out gain comparisons grade it).
"""

from __future__ import annotations

import itertools
import json
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import torch
from grpo_learner.embedded.task import split_problems
from grpo_learner.embedded.tokenizer import build_tokenizer
from grpo_learner.local.service_processes import find_executable
from grpo_learner.monitoring.metrics import read_metrics
from model_shapes import ModelShape  # benchmarks/model_shapes.py
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

PREAMBLE = "Work out the value of the expression below and write only the final answer in a box. "


@dataclass(frozen=True)
class RunShape:
    """One benchmark shape: the model (its `vocab` 0: the character tokenizer's own, ~80 tokens),
    the step (prompts x group), and prompt/completion lengths."""

    name: str
    model: ModelShape
    max_new_tokens: int
    prompt_tokens: int = 0  # 0: the bare problem ("37+45=", ~6 tokens); else at least this many
    group_size: int = 8
    prompts_per_step: int = 8
    max_positions: int = 512


@dataclass
class RunFigures:
    seconds_per_step: float
    steps_timed: int
    phases: dict[str, float] = field(default_factory=dict)  # timing/* means, seconds per step
    tokens_per_second: float = float("nan")  # the learner's own figure (mean over timed steps)
    rollout_idle: float = float("nan")  # mean rollout/idle_fraction over timed steps
    records: list[dict] = field(default_factory=list)


def tokenizer_for(vocab: int) -> PreTrainedTokenizerFast:
    tokenizer = build_tokenizer()
    if vocab > len(tokenizer):
        tokenizer.add_tokens([f"<x{i}>" for i in range(vocab - len(tokenizer))])
    return tokenizer


def write_assets(shape: RunShape, directory: Path, seed: int = 0, dtype: torch.dtype = torch.float32) -> int:
    """Write `directory/model` (HF format) and `directory/problems.jsonl`; return the parameter count."""
    tokenizer = tokenizer_for(shape.model.vocab)
    config = shape.model.qwen2_config(
        vocab_size=max(shape.model.vocab, (len(tokenizer) + 15) // 16 * 16),
        max_position_embeddings=shape.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.save_pretrained(directory / "model")
    tokenizer.save_pretrained(directory / "model")
    train, _ = split_problems(seed)
    lead = ""
    if shape.prompt_tokens:
        repeats = shape.prompt_tokens // len(PREAMBLE) + 1
        lead = (PREAMBLE * repeats)[: shape.prompt_tokens]
    lines = [json.dumps({"question": lead + p.prompt, "answer": p.reference}) for p in train]
    (directory / "problems.jsonl").write_text("\n".join(lines) + "\n")
    return sum(p.numel() for p in model.parameters())


def grpo_command(shape: RunShape, directory: Path, run_dir: Path, steps: int, *settings: str) -> list[str]:
    """The `grpo train` command line of one run; `settings` are extra `KEY=VALUE` overrides."""
    flags = [
        "data.apply_chat_template=false",
        f"rollout.group_size={shape.group_size}",
        f"rollout.prompts_per_step={shape.prompts_per_step}",
        f"rollout.sampling.max_new_tokens={shape.max_new_tokens}",
        "rollout.sampling.temperature=1.0",
        "loss.beta=0.0",
        f"train.micro_batch_size={shape.group_size * shape.prompts_per_step}",
        "checkpoint.interval=100000",
        "tensorboard=false",
        *settings,
    ]
    command = [
        find_executable("grpo"), "train", "--model", str(directory / "model"),
        "--data", str(directory / "problems.jsonl"), "--run-dir", str(run_dir),
        "--max-steps", str(steps), "--no-progress",
    ]  # fmt: skip
    for flag in flags:
        command += ["--set", flag]
    return command


def figures_from(run_dir: Path) -> RunFigures:
    """s/step, phase means and tokens/s from a finished run's metrics.jsonl (see the module docstring)."""
    records = [r for r in read_metrics(run_dir) if r["step"] >= 1]
    if len(records) < 3:
        raise RuntimeError(f"{run_dir}: {len(records)} steps logged; a timing needs at least 3")
    gaps = [b["time"] - a["time"] for a, b in itertools.pairwise(records)][1:]
    timed = records[2:]
    phases = sorted({k for r in timed for k in r if k.startswith("timing/")})
    idle = [r["rollout/idle_fraction"] for r in timed if "rollout/idle_fraction" in r]
    return RunFigures(
        seconds_per_step=statistics.median(gaps),
        steps_timed=len(gaps),
        phases={k: statistics.fmean(r[k] for r in timed if k in r) for k in phases},
        tokens_per_second=statistics.fmean(r.get("tokens_per_second", float("nan")) for r in timed),
        rollout_idle=statistics.fmean(idle) if idle else float("nan"),
        records=records,
    )


def grpo_seconds(records: list[dict]) -> float:
    """The training loop's wall time: from the first step's start (its log time minus its
    `timing/step`) to the last step's log time; process start, services and evaluation before the
    first step are not counted."""
    return records[-1]["time"] - (records[0]["time"] - records[0]["timing/step"])


def final_model(run_dir: Path) -> Path:
    """The model of a finished run's newest checkpoint (`checkpoint.interval` must reach the last step)."""
    models = sorted(run_dir.glob("checkpoints/*/model"))
    if not models:
        raise RuntimeError(f"{run_dir}: no checkpoint; set checkpoint.interval to the run's steps")
    return models[-1]


def run_grpo(
    shape: RunShape,
    directory: Path,
    run_dir: Path,
    steps: int,
    *settings: str,
    timeout_s: float = 3600,
    env: dict[str, str] | None = None,
) -> RunFigures:
    """Run `grpo train` to the end (its log in run_dir/learner.log) and read its figures."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "learner.log").open("wb") as log:
        result = subprocess.run(
            grpo_command(shape, directory, run_dir, steps, *settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=timeout_s,
            env=env,
        )
    if result.returncode != 0:
        tail = (run_dir / "learner.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"grpo train exited with {result.returncode}; its log ends with:\n{tail}")
    return figures_from(run_dir)


def phase_line(figures: RunFigures) -> str:
    """`generate 0.41 s, update 0.62 s, ..., rollout idle 0.35` from the timing/* means and the
    rollout services' idle fraction (or a note that the learner logs no timing/* keys)."""
    phases = [f"{k.removeprefix('timing/')} {v:.3f} s" for k, v in figures.phases.items()]
    if not phases:
        phases = ["no timing/* metrics in this version's metrics.jsonl"]
    return ", ".join([*phases, f"rollout idle {figures.rollout_idle:.2f}"])
