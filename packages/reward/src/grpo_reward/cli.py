"""`grpo-reward`: grade answers from the shell (`check`) or serve grpo.v1.RewardService (`serve`).

Both dispatch through the one task registry (`grpo_reward.tasks.TASKS`) and load the same plugins.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any, NoReturn

from grpo_common.cli_help import LazyEpilogParser, names_line
from grpo_common.server_flags import add_server_flags, server_overrides

from grpo_reward.service.config import DEFAULT_PORT
from grpo_reward.verdict import Verdict


def _refuse(message: str) -> NoReturn:
    """Exit 2 (a usage error, distinct from 1 = not correct) with the message on stderr."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


def _load_plugins(args: argparse.Namespace) -> None:
    from grpo_reward.tasks.plugins import PluginError, load_plugins

    try:
        load_plugins(args.plugin)
    except PluginError as error:
        _refuse(f"grpo-reward: {error}")


def _item(completion: str, reference: str, task: str, fields: object, where: str) -> Any:
    """An Item checked like a request: the task must be known, the fields one JSON object."""
    from grpo_common.registry import UnknownName
    from grpo_common.row_fields import FieldLimits, InvalidFields, parse_fields

    from grpo_reward.tasks import TASKS
    from grpo_reward.verifier import Item

    try:
        TASKS.get_item(task, import_references=False)
        text = fields if isinstance(fields, str) else json.dumps(fields or {})
        return Item(completion, reference, task, parse_fields(text, FieldLimits()))
    except UnknownName as error:
        _refuse(f"{where}: {error}")
    except InvalidFields as error:
        _refuse(f"{where}: fields {error}")


def _check_one(args: argparse.Namespace) -> int:
    from grpo_reward.verifier import Verifier

    _load_plugins(args)
    item = _item(args.completion, args.reference, args.task, args.fields, "grpo-reward check")
    with Verifier(
        workers=1,
        timeout_s=args.timeout_s,
        fallback_last_number=args.fallback_last_number,
        plugins=args.plugin,
    ) as verifier:
        verdict = verifier.submit_item(item).result()
    print(json.dumps(verdict.to_dict(), ensure_ascii=False))
    return 0 if verdict.correct else 1


def _read_items(path: Path) -> list[dict[str, Any]]:
    items = []
    stream = sys.stdin if str(path) == "-" else path.open(encoding="utf-8")
    with stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as error:
                raise SystemExit(
                    f"{path}:{number}: not valid JSON ({error}); expected one object per line"
                ) from None
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("completion"), str)
                or not isinstance(item.get("reference"), str)
            ):
                raise SystemExit(f'{path}:{number}: expected {{"completion": str, "reference": str}}')
            items.append(item)
    return items


def _check_file(args: argparse.Namespace) -> int:
    from grpo_reward.verifier import Verifier

    _load_plugins(args)
    items = _read_items(args.file)
    jobs = [
        _item(item["completion"], item["reference"], item.get("task") or args.task, item.get("fields"),
              f"{args.file}:{number}")
        for number, item in enumerate(items, start=1)
    ]  # fmt: skip
    with Verifier(
        workers=args.workers,
        timeout_s=args.timeout_s,
        fallback_last_number=args.fallback_last_number,
        plugins=args.plugin,
    ) as v:
        futures = [v.submit_item(job) for job in jobs]
        verdicts: list[Verdict] = [future.result() for future in futures]
    reasons: Counter[str] = Counter()
    for item, verdict in zip(items, verdicts, strict=True):
        record = {"id": item["id"]} if "id" in item else {}
        record.update(verdict.to_dict())
        print(json.dumps(record, ensure_ascii=False))
        reasons[verdict.reason.split(":")[0]] += 1
    correct = sum(verdict.correct for verdict in verdicts)
    summary = {
        "items": len(verdicts),
        "correct": correct,
        "accuracy": correct / len(verdicts) if verdicts else 0.0,
        "reasons": dict(reasons.most_common()),
    }
    print(json.dumps({"summary": summary}), file=sys.stderr)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from grpo_common.config import ConfigError, load_config
    from grpo_common.logging_setup import configure_logging

    from grpo_reward.models.config import named_values
    from grpo_reward.service.config import ENV_PREFIX, RewardServiceConfig
    from grpo_reward.service.server import TermStartError, serve
    from grpo_reward.tasks.plugins import PluginError

    try:  # a flag names a model by NAME=PATH; the config file's tables can set the rest
        models = named_values(args.reward_model or [], "--reward-model", "path") or None
        judges = named_values(args.judge or [], "--judge", "url") or None
    except ValueError as error:
        print(f"grpo-reward serve: {error}", file=sys.stderr)
        return 2
    overrides = {
        "reward_models": models,
        "judges": judges,
        **server_overrides(args),
        "workers": args.workers,
        "max_batch_items": args.max_batch_items,
        "default_timeout_s": args.timeout_s,
        "plugins": args.plugin or None,
        "worker_memory_mb": args.worker_memory_mb,
        "max_fields_bytes": args.max_fields_bytes,
        "log_level": args.log_level,
        "allow_unsafe_code": args.allow_unsafe_code,
        "sandbox.max_concurrent": args.max_sandboxes,
    }
    try:
        config = load_config(
            RewardServiceConfig, config_file=args.config, env_prefix=ENV_PREFIX, overrides=overrides
        )
    except ConfigError as error:
        print(f"grpo-reward serve: {error}", file=sys.stderr)
        return 2
    configure_logging(config.log_level)
    from grpo_reward.code_sandbox.policy import announce_code_sandbox

    announce_code_sandbox(config.allow_unsafe_code)  # probe the code sandbox once; workers inherit the opt-in

    def announce(running: Any) -> None:  # tests and launchers read the bound port from this line
        print(f"grpo-reward serving on {running.address}", flush=True)

    try:
        asyncio.run(serve(config, on_started=announce))
    except (PluginError, TermStartError) as error:
        print(f"grpo-reward serve: {error}", file=sys.stderr)
        return 2
    return 0


_PLUGIN_HELP = "import MODULE (its @TASKS.register tasks) or register module:function; repeatable"


def _tasks_epilog() -> str:
    from grpo_reward.tasks import TASKS  # imports the tasks (sympy): only when help is printed

    return (
        names_line("registered tasks (--task)", TASKS) + " (more with --plugin or as grpo.tasks entry points)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grpo-reward", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=LazyEpilogParser)

    check = commands.add_parser(
        "check",
        help="grade one answer or a JSONL file of answers",
        epilog=_tasks_epilog,  # type: ignore[arg-type]  # called when help is printed
    )
    source = check.add_mutually_exclusive_group(required=True)
    source.add_argument("--completion", help="the model's completion text")
    source.add_argument(
        "--file", type=Path, help='JSONL of {"completion", "reference", "id"?, "task"?, "fields"?}; - = stdin'
    )
    check.add_argument("--reference", help="the ground-truth answer (with --completion)")
    check.add_argument("--task", default="math", help="reward task name (default math; listed below)")
    check.add_argument("--fields", default="", help="the row's fields as one JSON object")
    check.add_argument("--plugin", action="append", default=[], help=_PLUGIN_HELP)
    check.add_argument("--timeout-s", type=float, default=1.0, help="per-item CPU-time limit (default 1)")
    check.add_argument(
        "--workers", type=int, default=None, help="worker processes for --file (default: CPUs)"
    )
    check.add_argument(
        "--fallback-last-number", action="store_true", help="grade the last number if no answer"
    )

    serve = commands.add_parser(
        "serve",
        help="serve grpo.v1.RewardService over gRPC",
        epilog=_tasks_epilog,  # type: ignore[arg-type]
    )
    serve.add_argument("--config", type=Path, help="TOML/YAML/JSON config file (RewardServiceConfig)")
    add_server_flags(serve, default_port=DEFAULT_PORT)
    serve.add_argument("--workers", type=int, help="verification worker processes (default: CPU count)")
    serve.add_argument("--max-batch-items", type=int, help="largest batch one Score call may carry")
    serve.add_argument("--timeout-s", type=float, help="default per-item CPU-time limit in seconds")
    serve.add_argument("--plugin", action="append", help=_PLUGIN_HELP)
    serve.add_argument("--worker-memory-mb", type=int, help="address-space cap of each worker process")
    serve.add_argument("--max-fields-bytes", type=int, help="largest ScoreItem.fields_json accepted")
    serve.add_argument(
        "--reward-model",
        action="append",
        metavar="NAME=PATH_OR_HUB_ID",
        help="serve a sequence-classifier reward model as task/component NAME; repeatable "
        "(needs grpo-reward[models]; more settings in the config file's [[reward_models]])",
    )
    serve.add_argument(
        "--judge",
        action="append",
        metavar="NAME=URL",
        help="an OpenAI-compatible chat-completions judge as task/component NAME; repeatable "
        "(rubric and limits in the config file's [[judges]])",
    )
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING, ...")
    serve.add_argument(
        "--max-sandboxes",
        type=int,
        help="code programs running at once in this service; the rest wait (default: one per core)",
    )
    serve.add_argument(
        "--allow-unsafe-code",
        action="store_true",
        default=None,
        help="UNSAFE: let the code task run programs without network/PID/mount isolation when the kernel "
        "refuses namespaces (rlimits, uid and empty environment still apply)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check":
        if args.completion is not None:
            if args.reference is None:
                build_parser().error("check --completion needs --reference")
            return _check_one(args)
        return _check_file(args)
    return _serve(args)


if __name__ == "__main__":
    sys.exit(main())
