"""`grpo-rollout serve`: run a RolloutService.

    grpo-rollout serve --model ./tiny --reward-address 127.0.0.1:50053 --port 0
    grpo-rollout serve --model ./tiny --reward-address 127.0.0.1:50053 --plugin my_envs:Calculator
    grpo-rollout serve --model Qwen/Qwen2.5-0.5B-Instruct --generator sglang \\
        --sglang-url http://gpu1:30000 --sglang-url http://gpu2:30000 --reward-address reward:50053

Settings come from `--config FILE` (TOML/YAML), then GRPO_ROLLOUT_* variables
(GRPO_ROLLOUT_LIMITS__BATCH_PROMPTS=16), then flags. Once serving, the bound address is printed
on stdout as `grpo-rollout serving on HOST:PORT` (useful with --port 0).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from grpo_common.cli_help import LazyEpilogParser, names_line
from grpo_common.config import ConfigError, load_config
from grpo_common.logging_setup import configure_logging
from grpo_common.server import serve_until_signalled
from grpo_common.server_flags import add_server_flags, server_overrides

from grpo_rollout.backends.registry import GENERATORS
from grpo_rollout.config import DEFAULT_PORT, ENV_PREFIX, RolloutServiceConfig

logger = logging.getLogger("grpo_rollout")


def _registries_epilog() -> str:
    from grpo_rollout.environments import ENVIRONMENTS  # imports the environments: only for help

    return "\n".join(
        (
            names_line("registered generator backends (--generator)", GENERATORS),
            names_line(
                "registered environments (environment.name in requests; more with --plugin)", ENVIRONMENTS
            ),
        )
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grpo-rollout", description="The GRPO rollout service.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=LazyEpilogParser)
    serve = commands.add_parser(
        "serve",
        help="serve RolloutService over gRPC",
        epilog=_registries_epilog,  # type: ignore[arg-type]  # called when help is printed
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--config", type=Path, help="TOML/YAML/JSON file with RolloutServiceConfig settings")
    serve.add_argument("--model", help="Hugging Face checkpoint directory (or cached hub id)")
    serve.add_argument(
        "--generator",
        help=f"generation backend: {', '.join(sorted(GENERATORS))}, or module:attr "
        f"(default {RolloutServiceConfig.model_fields['generator'].default})",
    )
    serve.add_argument("--reward-address", help="host:port of the RewardService")
    serve.add_argument(
        "--reward-tls-ca", type=Path, help="PEM CA bundle to trust for the RewardService (turns TLS on)"
    )
    serve.add_argument(
        "--sglang-url", action="append", help="SGLang worker URL (repeat for several); none = launch one"
    )
    serve.add_argument("--sglang-router-url", help="SGLang router URL for generation")
    serve.add_argument("--weight-dir", type=Path, help="sglang: directory for pushed weights")
    serve.add_argument(
        "--sglang-lora-rank", type=int, help="launched sglang: serve LoRA adapters up to this rank"
    )
    serve.add_argument(
        "--sglang-lora-target-module", action="append", help="launched sglang: a LoRA target module; repeat"
    )
    add_server_flags(serve, default_port=DEFAULT_PORT)
    serve.add_argument("--device", help="hf: torch device (default cpu)")
    serve.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="hf: model dtype")
    serve.add_argument("--torch-threads", type=int, help="hf: CPU threads for torch")
    serve.add_argument(
        "--plugin",
        action="append",
        help="environment plugin: module:attr (a factory, named so in requests) or a module that "
        "registers environments; repeatable",
    )
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING, ...")
    return parser


def config_from_args(args: argparse.Namespace) -> RolloutServiceConfig:
    overrides = {
        "model": args.model,
        "generator": args.generator,
        "reward.address": args.reward_address,
        "reward.channel.tls.ca": args.reward_tls_ca,
        "sglang.urls": args.sglang_url,
        "sglang.router_url": args.sglang_router_url,
        "sglang.weight_dir": args.weight_dir,
        "sglang.lora_max_rank": args.sglang_lora_rank,
        "sglang.lora_target_modules": args.sglang_lora_target_module,
        **server_overrides(args),
        "hf.device": args.device,
        "hf.dtype": args.dtype,
        "hf.torch_threads": args.torch_threads,
        "plugins": args.plugin,
        "log_level": args.log_level,
    }
    return load_config(
        RolloutServiceConfig, config_file=args.config, env_prefix=ENV_PREFIX, overrides=overrides
    )


async def serve(config: RolloutServiceConfig) -> None:
    from grpo_rollout.app import running_rollout  # heavy imports (torch) after the config is valid

    async with running_rollout(config) as rollout:
        print(f"grpo-rollout serving on {rollout.server.address}", flush=True)
        await serve_until_signalled(rollout.server)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"grpo-rollout: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level)
    try:
        asyncio.run(serve(config))
    except (OSError, ValueError, RuntimeError) as exc:
        logger.error("grpo-rollout stopped: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
