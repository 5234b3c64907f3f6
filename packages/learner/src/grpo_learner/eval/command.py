"""What `grpo eval` does: read the problems like training, find or start services, evaluate each model.

With `--rollout HOST:PORT` the named services are used as they are (they serve one model; the
reward service that buckets answers for maj@k is `eval.reward_address`, else a local one is
started). Without, a reward service and a rollout service serving the model are started as child
processes, exactly as `grpo train` does, once per model when several are compared.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from grpo_common.config import ConfigError

from grpo_learner.config import LearnerConfig
from grpo_learner.data.prompts import ListPromptSource
from grpo_learner.eval.comparison import compare, comparison_record, print_comparison
from grpo_learner.eval.report import print_summary, summary, write_outputs
from grpo_learner.eval.runner import EvalResult, eval_sampling, run_evaluation
from grpo_learner.local.service_processes import find_executable, local_services, start_service

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelEvaluation:
    model: str
    result: EvalResult
    summary: dict


def eval_data_label(config: LearnerConfig) -> str:
    data = config.eval.data or config.data.path
    if data is not None:
        return str(data)
    if config.data.hub_name:
        return f"{config.data.hub_name}[{config.data.split}]"
    raise ConfigError("no data: give --data FILE (JSONL or Parquet), or eval.data / data.path in the config")


@contextmanager
def _services(config: LearnerConfig, model: str, state_dir: Path) -> Iterator[tuple[list[str], str | None]]:
    """(rollout addresses, reward address) serving `model`: the named ones, or started here."""
    addresses, reward = config.rollout.addresses, config.eval.reward_address
    if not addresses:
        with local_services(model, state_dir, config.local_services, max_staleness=0) as services:
            yield [services[-1].address], reward or services[0].address
        return
    if reward is None and config.eval.samples:
        argv = [
            find_executable("grpo-reward"),
            "serve",
            "--workers",
            str(config.local_services.reward_workers),
        ]
        service = start_service("reward", argv, state_dir / "services")
        try:
            yield addresses, service.address
        finally:
            service.stop()
        return
    yield addresses, reward


def evaluate_models(
    config: LearnerConfig,
    models: Sequence[str],
    prompts: ListPromptSource,
    *,
    out: Path | None,
    progress: bool,
) -> list[ModelEvaluation]:
    """Evaluate every model on `prompts`; write and print each one's results, and the comparison."""
    if len(models) > 1 and config.rollout.addresses:
        raise ConfigError(
            "comparing models needs services per model: leave out --rollout (grpo eval starts a rollout "
            "service for each model), or evaluate each model alone with --out and compare the summaries"
        )
    items = list(prompts.items)[: config.eval.max_problems]
    label = eval_data_label(config)
    evaluations = []
    with ExitStack() as stack:
        scratch = out or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="grpo-eval-")))
        for index, model in enumerate(models):
            model_out = out / f"model_{index + 1}" if out is not None and len(models) > 1 else out
            with _services(config, model, (model_out or scratch / f"model_{index + 1}")) as (rollout, reward):
                result = asyncio.run(
                    run_evaluation(items, config, rollout, reward, model=model, progress=progress)
                )
            record = summary(result, config, eval_sampling(config, model), model, label)
            if model_out is not None:
                write_outputs(model_out, result, record)
            print_summary(record)
            evaluations.append(ModelEvaluation(model, result, record))
    if len(evaluations) > 1:
        _compare(evaluations, config, out)
    return evaluations


def _compare(evaluations: Sequence[ModelEvaluation], config: LearnerConfig, out: Path | None) -> None:
    base, seed = evaluations[0], config.train.seed
    differences = [compare(base.result, e.result, config.eval, seed=seed) for e in evaluations[1:]]
    models = [e.model for e in evaluations]
    print_comparison(models, differences)
    if out is not None:
        record = comparison_record(models, differences)
        (out / "comparison.json").write_text(json.dumps(record, indent=2) + "\n")
