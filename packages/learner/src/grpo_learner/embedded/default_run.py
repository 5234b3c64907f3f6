"""`grpo train` with nothing named: the whole system on one machine, visibly learning.

1. build the char tokenizer and the tiny model, warm it up briefly (supervised), save both in
   Hugging Face format under RUN_DIR/warmup;
2. start `grpo-reward serve` and `grpo-rollout serve --model RUN_DIR/warmup` as child processes on
   free loopback ports;
3. write the held-out split to RUN_DIR/heldout.jsonl (`grpo eval --data` reads it) and evaluate it
   through the services with the [eval] hook: greedy accuracy every 25 steps, and pass@1 / maj@8
   over 8 samples per problem at step 0 (the "before") and at the end (the "after"); with an
   environment ([rollout.environment]) also the greedy accuracy of the same weights without it
   (`greedy_accuracy_without_environment`: what the model does without its tool), before and after;
4. run the ordinary GRPO training loop against those services;
5. write summary.json and the curves, print a table.

The same steps serve every embedded task (grpo_learner.embedded.tasks: `[embedded] task = ...` in a
config file): the task gives the problems, the warm-up transcripts, the tokenizer's extra tokens and
the settings it needs on top of EMBEDDED_DEFAULTS.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from grpo_common.config import ConfigError, deep_merge

from grpo_learner.config import LearnerConfig
from grpo_learner.config.environment import EnvironmentConfig
from grpo_learner.data.prompts import ListPromptSource, PromptItem, load_prompt_file
from grpo_learner.embedded.model import build_tiny_model
from grpo_learner.embedded.reward_model import prepare_reward_model
from grpo_learner.embedded.task import Problem
from grpo_learner.embedded.tasks import EmbeddedConfig
from grpo_learner.embedded.tokenizer import build_tokenizer
from grpo_learner.embedded.warmup import supervised_warmup
from grpo_learner.eval.runner import run_evaluation, training_evaluator
from grpo_learner.local.service_processes import local_services
from grpo_learner.monitoring.metrics import read_metrics
from grpo_learner.monitoring.plot import plot_run
from grpo_learner.training.loop import run_training

logger = logging.getLogger(__name__)

# The learner settings of the default run (an embedded task adds its own over them); any of them can be
# overridden from the CLI / a file.
EMBEDDED_DEFAULTS: dict[str, Any] = {
    "model": {"name_or_path": "(built by the embedded default)"},
    "data": {"apply_chat_template": False},
    "rollout": {
        "group_size": 8,
        "prompts_per_step": 32,
        "max_staleness": 0,
        "sampling": {"temperature": 0.7, "max_new_tokens": 12},
    },
    "optim": {"lr": 2e-4, "warmup_steps": 5, "schedule": "constant", "max_grad_norm": 1.0},
    "loss": {"loss_type": "grpo", "beta": 0.0},
    # 200 steps: the held-out curve makes its gain by step 100-150 and wanders after it (a 300-step run)
    "train": {"max_steps": 200, "micro_batch_size": 256, "seed": 0, "device": "cpu"},
    "checkpoint": {"interval": 100, "keep_last": 1},
    # eval.data unset: the held-out split; sampled metrics (8 per problem) only before and after
    "eval": {"every": 25, "greedy": True, "samples": 8, "k": [8], "sample_every": 0},
    "run_dir": "runs/default",
}


HELDOUT_FILE = "heldout.jsonl"
REPORTED = ("greedy_accuracy", "pass@1", "maj@8")  # the before/after figures of the end table
WITHOUT_ENVIRONMENT = "greedy_accuracy_without_environment"


@dataclass
class RunSummary:
    task: str  # the embedded task (EMBEDDED_TASKS)
    heldout_accuracy_before: float  # greedy, = heldout_before["greedy_accuracy"]
    heldout_accuracy_after: float
    heldout_before: dict[
        str, float
    ]  # every eval/ metric at step 0, without the prefix (+ WITHOUT_ENVIRONMENT)
    heldout_after: dict[str, float]  # ... and at the last step
    steps: int
    wall_seconds: float
    warmup_seconds: float
    grpo_seconds: float
    tokens_per_second: float
    heldout_problems: int
    run_dir: str
    trainable_parameters: int  # of the policy: every weight, or the LoRA adapters ([model.lora])
    total_parameters: int
    reward_model_pair_accuracy: float | None = None  # held-out preference pairs the reward model ranks right


# Settings an embedded run has no use for: it builds its own model, trains on its task's problems and
# starts its own services. Given anyway, they are refused rather than silently dropped.
NOT_FOR_EMBEDDED = {
    ("model", "name_or_path"): "--model / model.name_or_path",
    ("data", "path"): "--data / data.path",
    ("data", "hub_name"): "data.hub_name",
    ("rollout", "addresses"): "--rollout / rollout.addresses",
    ("rollout", "addresses_file"): "rollout.addresses_file",
}


def embedded_config(overrides: dict[str, Any], embedded: EmbeddedConfig | None = None) -> LearnerConfig:
    """EMBEDDED_DEFAULTS < the task's own settings < `overrides`, validated."""
    for (section, key), named in NOT_FOR_EMBEDDED.items():
        given = overrides.get(section)
        if isinstance(given, dict) and given.get(key):
            raise ConfigError(
                f"{named} is for a run of a model you name: the embedded run (no --model, or a config "
                "with [embedded]) builds its tiny model, trains it on its task's own problems and starts "
                f"its own services. Give --model to train that model, or drop {named.split(' / ')[0]}"
            )
    task = (embedded or EmbeddedConfig()).embedded_task
    return LearnerConfig.model_validate(deep_merge(deep_merge(EMBEDDED_DEFAULTS, task.settings), overrides))


def _prompt_items(problems: list[Problem]) -> list[PromptItem]:
    return [PromptItem(id=p.id, reference=p.reference, text=p.prompt, task=p.task) for p in problems]


def prepare_warm_model(run_dir: Path, config: LearnerConfig, embedded: EmbeddedConfig) -> Path:
    """Build, warm up and save the tiny model + tokenizer; returns the HF directory."""
    task, seed = embedded.embedded_task, config.train.seed
    if config.train.torch_threads:  # the learner's threads, as the training loop will set them
        torch.set_num_threads(config.train.torch_threads)
    tokenizer = build_tokenizer(task.extra_tokens)
    model = build_tiny_model(tokenizer, seed)
    train, _ = task.split(seed)
    logger.info("supervised warm-up (%s): %d steps on %d problems", embedded.task, embedded.steps, len(train))
    supervised_warmup(model, tokenizer, train, task.transcript, steps=embedded.steps, seed=seed)
    model_dir = run_dir / "warmup"
    # `grpo eval`'s default for this model
    model.generation_config.max_new_tokens = config.rollout.sampling.max_new_tokens
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model_dir


def serve_reward_model(
    run_dir: Path, config: LearnerConfig, embedded: EmbeddedConfig
) -> tuple[LearnerConfig, float | None]:
    """Train the task's reward model into RUN_DIR/reward-model (once) and have the reward service serve
    it (`--config RUN_DIR/reward.toml`, one CPU thread); the config with those flags, and the model's
    held-out pair accuracy (None when it was trained by an earlier run)."""
    task, seed = embedded.embedded_task, config.train.seed
    recipe = task.reward_model
    assert recipe is not None
    folder = run_dir / "reward-model"
    accuracy = None
    if not (folder / "config.json").exists():
        train, heldout = task.split(seed)
        tokenizer = build_tokenizer(task.extra_tokens)
        accuracy = prepare_reward_model(folder, recipe, tokenizer, train, heldout, seed)
    settings = run_dir / "reward.toml"
    settings.write_text(
        f"[[reward_models]]\nname = {json.dumps(recipe.name)}\npath = {json.dumps(str(folder))}\n"
        "torch_threads = 1\n"
    )
    services = config.local_services
    flags = [*services.reward_args, "--config", str(settings)]
    update = {"local_services": services.model_copy(update={"reward_args": flags})}
    return config.model_copy(update=update), accuracy


def write_heldout(path: Path, problems: list[Problem]) -> Path:
    """The held-out split as a problem file (question, answer, task) that `grpo eval --data` reads."""
    rows = (
        json.dumps({"question": p.prompt, "answer": p.reference, **({"task": p.task} if p.task else {})})
        for p in problems
    )
    path.write_text("".join(f"{row}\n" for row in rows))
    return path


async def greedy_without_environment(
    config: LearnerConfig, items: list[PromptItem], address: str, version: int
) -> float:
    """Greedy held-out accuracy of weights `version` as single-turn generations: the run's environment
    (its tool) switched off, the model left to answer alone."""
    alone = config.rollout.model_copy(update={"environment": EnvironmentConfig()})
    without_environment = config.model_copy(update={"rollout": alone})
    result = await run_evaluation(
        items, without_environment, [address], None, sampled=False, min_policy_version=version
    )
    return result.metrics["greedy_accuracy"]


async def run_default(
    overrides: dict[str, Any],
    *,
    embedded: EmbeddedConfig | None = None,
    progress: bool = True,
) -> RunSummary:
    started = time.monotonic()
    embedded = embedded or EmbeddedConfig()
    config = embedded_config(overrides, embedded)
    if not (config.eval.every and config.eval.greedy):
        raise ConfigError("the embedded default reports held-out accuracy: keep eval.every > 0, eval.greedy")
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    train, heldout = embedded.embedded_task.split(config.train.seed)
    heldout_path = config.eval.data or write_heldout(run_dir / HELDOUT_FILE, heldout)
    heldout_items = list(load_prompt_file(heldout_path).items)[: config.eval.max_problems]

    model_dir = run_dir / "warmup"
    warmup_seconds = 0.0
    pair_accuracy = None
    if embedded.embedded_task.reward_model is not None:  # the reward service serves it from the start
        config, pair_accuracy = serve_reward_model(run_dir, config, embedded)

    def warm_up() -> None:  # runs while the reward service starts
        nonlocal warmup_seconds
        if not (model_dir / "config.json").exists():
            prepare_warm_model(run_dir, config, embedded)
        warmup_seconds = time.monotonic() - started

    with local_services(
        str(model_dir),
        run_dir,
        config.local_services,
        max_staleness=config.rollout.max_staleness,
        while_reward_starts=warm_up,
    ) as services:
        config = config.model_copy(
            update={"model": config.model.model_copy(update={"name_or_path": str(model_dir)})}
        )
        rollout = services[-1].address

        evaluate = training_evaluator(config, heldout_items, [rollout], services[0].address)
        with_tool = config.rollout.environment.enabled
        alone = [await greedy_without_environment(config, heldout_items, rollout, 0)] if with_tool else []
        grpo_started = time.monotonic()
        state = await run_training(
            config,
            ListPromptSource(_prompt_items(train)),
            model_path=str(model_dir),
            addresses=[rollout],
            progress=progress,
            evaluator=evaluate,
            eval_every=config.eval.every,
        )
        grpo_seconds = time.monotonic() - grpo_started
        if with_tool:
            alone.append(
                await greedy_without_environment(config, heldout_items, rollout, state.policy_version)
            )

    records = read_metrics(run_dir)
    # logged at step 0 (the warm-up model) and at the last step, each with every eval/ metric
    evaluated = [r for r in records if "eval/greedy_accuracy" in r]
    before, after = (
        {k.removeprefix("eval/"): v for k, v in r.items() if k.startswith("eval/")}
        for r in (evaluated[0], evaluated[-1])
    )
    if alone:
        before[WITHOUT_ENVIRONMENT], after[WITHOUT_ENVIRONMENT] = alone
    tokens = [r["tokens_per_second"] for r in records if "tokens_per_second" in r]
    counts = next(r for r in records if "model/trainable_parameters" in r)  # this run's first record
    summary = RunSummary(
        task=embedded.task,
        heldout_accuracy_before=before["greedy_accuracy"],
        heldout_accuracy_after=after["greedy_accuracy"],
        heldout_before=before,
        heldout_after=after,
        steps=state.step,
        wall_seconds=time.monotonic() - started,
        warmup_seconds=warmup_seconds,
        grpo_seconds=grpo_seconds,
        tokens_per_second=sum(tokens) / len(tokens) if tokens else 0.0,
        heldout_problems=len(heldout_items),
        run_dir=str(run_dir),
        trainable_parameters=int(counts["model/trainable_parameters"]),
        total_parameters=int(counts["model/total_parameters"]),
        reward_model_pair_accuracy=pair_accuracy,
    )
    (run_dir / "summary.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
    plot_run(run_dir)
    return summary
