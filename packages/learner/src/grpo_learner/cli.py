"""`grpo`: the learner's command line.

    grpo train --config run.toml [--model M] [--data FILE] [--rollout HOST:PORT ...] [--set key=value ...]
    grpo plot RUN_DIR [--output curves.png]

Settings come from the file, then `GRPO_LEARNER_*` environment variables, then flags; the whole
configuration is validated before any model is loaded, and a bad value exits with status 2 and a
message naming the field.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from grpo_common.config import ConfigError
from grpo_common.logging_setup import configure_logging

logger = logging.getLogger(__name__)


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """["loss.beta=0.04", "rollout.addresses=[\"a:1\"]"] -> dotted overrides (JSON values, else strings)."""
    overrides: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set loss.beta=0.04")
        try:
            overrides[key] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key] = raw
    return overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grpo", description="GRPO training for language models")
    parser.add_argument("--log-level", default="INFO")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a policy against rollout services")
    train.add_argument("--config", type=Path, help="TOML/YAML/JSON learner config")
    train.add_argument("--model", help="model.name_or_path: hub name or local directory")
    train.add_argument("--data", help="data.path: JSONL or Parquet problems (GSM8K / MATH layouts)")
    train.add_argument("--rollout", action="append", help="rollout service host:port (repeatable)")
    train.add_argument("--max-steps", type=int, help="train.max_steps")
    train.add_argument("--loss-type", help="loss.loss_type: grpo, bnpo, dr_grpo, dapo, gspo, cispo")
    train.add_argument("--run-dir", help="where metrics, TensorBoard logs and checkpoints go")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="any setting, e.g. loss.beta=0.04")
    train.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")

    plot = commands.add_parser("plot", help="write a PNG of a run's curves")
    plot.add_argument("run_dir", type=Path)
    plot.add_argument("--output", type=Path, help="default: RUN_DIR/curves.png")
    return parser


def train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    flags = {
        "model.name_or_path": args.model,
        "data.path": args.data,
        "rollout.addresses": args.rollout,
        "train.max_steps": args.max_steps,
        "loss.loss_type": args.loss_type,
        "run_dir": args.run_dir,
    }
    return {**flags, **parse_set(args.set)}


def cmd_train(args: argparse.Namespace) -> int:
    from grpo_learner.config import load_learner_config

    config = load_learner_config(args.config, train_overrides(args))
    if config.data.path is None:
        raise ConfigError(
            "data.path is not set: give --data FILE (JSONL or Parquet) or data.path in the config"
        )
    if not config.rollout.addresses:
        raise ConfigError("rollout.addresses is empty: give --rollout HOST:PORT for each rollout service")
    from grpo_learner.loop import run_training
    from grpo_learner.prompts import load_prompt_file

    prompts = load_prompt_file(
        config.data.path,
        question_field=config.data.question_field,
        answer_field=config.data.answer_field,
        id_field=config.data.id_field,
        prompt_template=config.data.prompt_template,
        task=config.data.task,
    )
    state = asyncio.run(run_training(config, prompts, progress=not args.no_progress))
    print(f"trained {state.step} steps; policy version {state.policy_version}; run dir {config.run_dir}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from grpo_learner.plot import plot_run

    print(plot_run(args.run_dir, args.output))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        return {"train": cmd_train, "plot": cmd_plot}[args.command](args)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"grpo {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
