"""`grpo`: the learner's command line.

    grpo train                                   the embedded default: tiny model, local services, CPU
    grpo train --config examples/tool-use.toml   an embedded run of another task ([embedded] task = ...)
    grpo train --config run.toml [--model M] [--data FILE] [--rollout HOST:PORT ...] [--set key=value ...]
    grpo train --nproc N ...                     the same on N learner processes (torchrun, FSDP2)
    grpo eval --model M [--model M2 ...] --data FILE [--greedy] [--samples N --k 1,N] [--out DIR]
    grpo export RUN_DIR/checkpoints/step-N OUT [--merge]   LoRA adapters folded into a plain HF model
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
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grpo_common.cli_help import LazyEpilogParser
from grpo_common.config import ConfigError
from grpo_common.logging_setup import configure_logging
from grpo_common.model_reference import check_model_reference

from grpo_learner.config import LearnerConfig, load_learner_config

if TYPE_CHECKING:
    from grpo_learner.data.prompts import ListPromptSource

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


def _train_epilog() -> str:
    from grpo_learner.training.registered_names import registered_names_help

    return "registered names (set with --set FIELD=NAME):\n" + registered_names_help()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grpo", description="GRPO training for language models")
    parser.add_argument("--log-level", default="INFO")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=LazyEpilogParser)

    train = commands.add_parser(
        "train",
        help="train a policy against rollout services",
        epilog=_train_epilog,  # type: ignore[arg-type]  # called when help is printed (torch)
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--config", type=Path, help="TOML/YAML/JSON learner config")
    train.add_argument("--model", help="model.name_or_path: hub name or local directory")
    train.add_argument("--data", help="data.path: JSONL or Parquet problems (GSM8K / MATH layouts)")
    train.add_argument("--rollout", action="append", help="rollout service host:port (repeatable)")
    train.add_argument("--max-steps", type=int, help="train.max_steps")
    train.add_argument("--loss-type", help="loss.loss_type: a registered loss (listed below)")
    train.add_argument("--run-dir", help="where metrics, TensorBoard logs and checkpoints go")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="any setting, e.g. loss.beta=0.04")
    train.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")
    train.add_argument(
        "--resume", action="store_true", help="continue from the latest checkpoint in the run dir"
    )
    train.add_argument("--seed", type=int, help="train.seed")
    train.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="learner processes on this machine (one per GPU; gloo on CPU): re-launches itself "
        "under torchrun with FSDP2; for several machines run torchrun -m grpo_learner train yourself",
    )
    train.add_argument(
        "--warmup-steps",
        type=int,
        default=None,
        help="embedded runs only: embedded.warmup_steps, the supervised warm-up steps (default: the task's)",
    )

    evaluate = commands.add_parser(
        "eval", help="greedy accuracy, pass@k and maj@k of a model (or several, compared) on a problem file"
    )
    evaluate.add_argument(
        "--model", action="append", help="HF hub name or local directory (repeat to compare checkpoints)"
    )
    evaluate.add_argument("--data", help="eval.data: JSONL or Parquet problems, read like training data")
    evaluate.add_argument("--samples", type=int, help="eval.samples: N sampled completions per problem")
    evaluate.add_argument("--k", help="eval.k: comma-separated k of pass@k and maj@k, e.g. 1,4,16")
    evaluate.add_argument("--temperature", type=float, help="eval.temperature of the sampled completions")
    evaluate.add_argument("--greedy", action="store_true", help="one greedy completion per problem")
    evaluate.add_argument("--rollout", action="append", help="rollout service host:port (repeatable)")
    evaluate.add_argument("--reward", help="eval.reward_address: reward service host:port for maj@k")
    evaluate.add_argument("--max-problems", type=int, help="eval.max_problems: the first M problems")
    evaluate.add_argument("--out", type=Path, help="write samples.jsonl and summary.json here")
    evaluate.add_argument("--config", type=Path, help="TOML/YAML/JSON learner config ([eval], [data], ...)")
    evaluate.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="any setting, e.g. eval.k=[1,8]"
    )
    evaluate.add_argument("--seed", type=int, help="train.seed: sampling and bootstrap seed")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")

    export = commands.add_parser("export", help="a checkpoint's model as its own directory (LoRA: --merge)")
    export.add_argument("checkpoint", type=Path, help="RUN_DIR/checkpoints/step-N (or its model/)")
    export.add_argument("out", type=Path, help="the new directory")
    export.add_argument(
        "--merge", action="store_true", help="fold LoRA adapters into the base model: a plain HF model"
    )
    export.add_argument(
        "--base", help="the base model of the adapters (default: as adapter_config.json says)"
    )
    export.add_argument("--trust-remote-code", action="store_true")

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
        "train.seed": args.seed,
        "checkpoint.resume": True if args.resume else None,
    }
    return {**flags, **parse_set(args.set)}


def embedded_settings(args: argparse.Namespace) -> dict[str, Any] | None:
    """The settings of an embedded run (no --model, and no --config or one with an [embedded] section),
    else None: the embedded run builds its own model, so naming one is an error there."""
    from grpo_common.config import read_config_file

    settings = read_config_file(args.config) if args.config is not None else {}
    if args.config is not None and "embedded" not in settings:
        return None
    if not isinstance(settings.get("embedded", {}), dict):
        raise ConfigError(f'{args.config}: embedded must be a table, e.g. [embedded] task = "tool-use"')
    if args.model is not None:
        if args.config is None:
            return None
        raise ConfigError(
            f"{args.config} has an [embedded] section, which builds its own model: drop --model"
        )
    return settings


def cmd_train(args: argparse.Namespace) -> int:
    from grpo_learner.distributed.process_group import launched_distributed

    settings = embedded_settings(args)
    if settings is not None:
        if launched_distributed():
            raise ConfigError(
                "under torchrun give --model or a --config without [embedded]: an embedded run "
                "runs in one process"
            )
        return cmd_train_embedded(args, settings)
    config = load_learner_config(args.config, train_overrides(args))
    check_model_reference(config.model.name_or_path, "model.name_or_path")
    from grpo_learner.training.registered_names import check_registered_names

    check_registered_names(config)
    if config.data.path is None and config.data.hub_name is None:
        raise ConfigError(
            "no data: give --data FILE (JSONL or Parquet), or data.path / data.hub_name in the config"
        )
    from grpo_learner.local.service_processes import local_services
    from grpo_learner.training.loop import run_training

    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: the other ranks train what rank 0 sends
        asyncio.run(run_training(config, progress=False))
        return 0
    if config.eval.every and config.eval.data is None:
        raise ConfigError("eval.every is set but eval.data is not: name the held-out problems file")
    prompts = load_prompts(config)
    eval_prompts = load_prompts(config, config.eval.data) if config.eval.every else None
    progress = not args.no_progress
    if config.rollout.addresses or config.rollout.addresses_file:
        evaluation = _training_evaluation(config, eval_prompts, config.rollout.addresses, None)
        state = asyncio.run(run_training(config, prompts, progress=progress, **evaluation))
    else:  # no services named: run them here, as child processes
        Path(config.run_dir).mkdir(parents=True, exist_ok=True)
        with local_services(
            config.model.name_or_path,
            Path(config.run_dir),
            config.local_services,
            max_staleness=config.rollout.max_staleness,
        ) as services:
            addresses = [services[-1].address]
            evaluation = _training_evaluation(config, eval_prompts, addresses, services[0].address)
            state = asyncio.run(
                run_training(config, prompts, addresses=addresses, progress=progress, **evaluation)
            )
    print(f"trained {state.step} steps; policy version {state.policy_version}; run dir {config.run_dir}")
    return 0


def load_prompts(config: LearnerConfig, path: Path | str | None = None) -> ListPromptSource:
    """The problems of [data] (or of the file `path`, read with [data]'s fields and template, and
    [reward]'s default task and field size limit)."""
    from grpo_learner.data.prompts import load_prompt_file, read_hub_rows

    data = config.data
    rows = None
    if path is None and data.hub_name:
        path, rows = (
            f"{data.hub_name}[{data.split}]",
            read_hub_rows(data.hub_name, data.hub_config, data.split),
        )
    path = path or data.path
    if path is None:
        raise ConfigError("no data: give --data FILE (JSONL or Parquet), or data.path / data.hub_name")
    return load_prompt_file(
        path,
        question_field=data.question_field,
        answer_field=data.answer_field,
        id_field=data.id_field,
        prompt_template=data.prompt_template,
        task=config.reward.task,
        rows=rows,
        max_fields_bytes=config.reward.max_fields_bytes,
    )


def _training_evaluation(
    config: LearnerConfig, prompts: ListPromptSource | None, addresses: list[str], reward: str | None
) -> dict[str, Any]:
    """run_training's evaluator/eval_every for [eval] (nothing when eval.every is 0)."""
    if prompts is None:
        return {}
    from grpo_learner.eval.runner import training_evaluator

    items = list(prompts.items)[: config.eval.max_problems]
    evaluator = training_evaluator(config, items, addresses, config.eval.reward_address or reward)
    return {"evaluator": evaluator, "eval_every": config.eval.every}


def cmd_train_embedded(args: argparse.Namespace, settings: dict[str, Any]) -> int:
    """No model named: build the task's tiny model, start local services, train, report before/after.

    `settings`: the config file's (its [embedded] section says which task), under the flags."""
    from grpo_common.config import deep_merge, dotted_to_nested
    from pydantic import ValidationError

    from grpo_learner.embedded.default_run import embedded_config, run_default
    from grpo_learner.embedded.report import print_summary
    from grpo_learner.embedded.tasks import EmbeddedConfig

    settings = dict(settings)
    section = settings.pop("embedded", {})
    if args.warmup_steps is not None:
        section = {**section, "warmup_steps": args.warmup_steps}
    try:
        embedded = EmbeddedConfig.model_validate(section)
    except ValidationError as exc:
        where = args.config or "--warmup-steps"
        problems = "; ".join(f"embedded.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{where}: {problems}") from None
    overrides = deep_merge(settings, dotted_to_nested(train_overrides(args)))
    embedded_config(overrides, embedded)  # validate every setting before building anything
    summary = asyncio.run(run_default(overrides, embedded=embedded, progress=not args.no_progress))
    print_summary(summary)
    return 0


def eval_overrides(args: argparse.Namespace) -> dict[str, Any]:
    try:
        ks = [int(k) for k in args.k.split(",")] if args.k else None
    except ValueError:
        raise ConfigError(f"--k {args.k!r}: expected comma-separated integers, e.g. --k 1,4,16") from None
    samples = args.samples if args.samples is not None else (max(ks) if ks else None)
    flags = {
        "model.name_or_path": args.model[0] if args.model else None,
        "eval.data": args.data,
        "eval.samples": samples,
        "eval.k": ks,
        "eval.temperature": args.temperature,
        "eval.greedy": True if args.greedy else None,
        "rollout.addresses": args.rollout,
        "eval.reward_address": args.reward,
        "eval.max_problems": args.max_problems,
        "train.seed": args.seed,
    }
    return {**flags, **parse_set(args.set)}


def cmd_eval(args: argparse.Namespace) -> int:
    """`grpo eval`: see grpo_learner.eval.command."""
    from grpo_learner.eval.command import evaluate_models

    config = load_learner_config(args.config, eval_overrides(args))
    if not config.eval.greedy and not config.eval.samples:
        raise ConfigError("nothing to evaluate: give --greedy and/or --samples N (with --k 1,N)")
    from grpo_learner.eval.buckets import BucketingError
    from grpo_learner.local.service_processes import ServiceStartError
    from grpo_learner.rollouts.client import RolloutError

    models = [check_model_reference(m, "--model") for m in args.model or [config.model.name_or_path]]
    prompts = load_prompts(config, config.eval.data)
    try:
        evaluate_models(config, models, prompts, out=args.out, progress=not args.no_progress)
    except (BucketingError, RolloutError, ServiceStartError) as exc:
        print(f"grpo eval: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from grpo_learner.monitoring.plot import plot_run

    print(plot_run(args.run_dir, args.output))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """`grpo export`: see grpo_learner.lora.export."""
    from grpo_learner.lora.export import export_checkpoint

    out = export_checkpoint(
        args.checkpoint, args.out, merge=args.merge, base=args.base, trust_remote_code=args.trust_remote_code
    )
    print(out)
    return 0


def cmd_train_processes(args: argparse.Namespace, argv: list[str]) -> int:
    """--nproc N > 1 outside torchrun: run this very command as N processes under torchrun."""
    from grpo_learner.distributed.torchrun_launch import relaunch

    if args.nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {args.nproc}")
    if embedded_settings(args) is not None:
        raise ConfigError(
            "--nproc needs --model or a --config without [embedded]: an embedded run (tiny model, "
            "local services) runs in one process"
        )
    code = relaunch(argv, args.nproc)
    if code != 0:
        print(
            f"grpo train: the {args.nproc} learner processes failed (torchrun exit status {code}); "
            "the first failing rank's message is above",
            file=sys.stderr,
        )
    return code


def main(argv: list[str] | None = None) -> int:
    from grpo_learner.local.openmp_policy import prefer_passive_waiting

    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if args.command in ("train", "eval"):  # they share the CPU with their services: local/openmp_policy.py
        prefer_passive_waiting(os.environ)  # before anything below imports torch
    from grpo_learner.distributed.process_group import RankFailure, launched_distributed

    configure_logging(args.log_level)
    try:
        if args.command == "train" and args.nproc != 1 and not launched_distributed():
            return cmd_train_processes(args, argv)
        commands = {"train": cmd_train, "eval": cmd_eval, "export": cmd_export, "plot": cmd_plot}
        return commands[args.command](args)
    except (ConfigError, FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"grpo {args.command}: {exc}", file=sys.stderr)
        return 2
    except RankFailure as exc:
        print(f"grpo {args.command}: {exc}", file=sys.stderr)
        return 1
    except _run_failures() as exc:  # evaluated only when something was raised
        logging.getLogger(__name__).debug("the run failed", exc_info=True)
        print(f"grpo {args.command}: {exc}", file=sys.stderr)
        return 1


def _run_failures() -> tuple[type[BaseException], ...]:
    """Failures a run reports in a sentence that says what to do, not with a traceback: a request a
    service refused, a service that would not start, a non-finite update, a failed NCCL sync."""
    from grpo_learner.eval.buckets import BucketingError
    from grpo_learner.grpo.nonfinite import NonFiniteUpdate
    from grpo_learner.local.service_processes import ServiceStartError
    from grpo_learner.rollouts.client import RolloutError
    from grpo_learner.weight_sync.nccl_collective_wait import WeightSyncError

    return (RolloutError, ServiceStartError, NonFiniteUpdate, WeightSyncError, BucketingError)


if __name__ == "__main__":
    sys.exit(main())
