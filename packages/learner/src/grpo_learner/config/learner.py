"""The learner's one typed configuration, validated in full before any model is loaded.

Sections mirror the modules that read them: `model`, `data`, `reward`, `rollout` (+ `sampling`), `optim`,
`loss` (+ `advantage`, `sampler_correction`), `train`, `checkpoint`, `push`, `distributed`, `eval`,
and `run_dir` (`reward` and `eval` are defined in reward.py and eval.py).
Load it with `load_learner_config` (TOML/YAML file < `GRPO_LEARNER_*` environment < CLI overrides).
A bad value fails here with the field named, e.g. `loss.loss_type: unknown loss 'ppo'; registered:
bnpo, cispo, dapo, dr_grpo, grpo, gspo`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from grpo_common.addresses import parse_addresses
from grpo_common.channel import ChannelConfig
from grpo_common.config import ConfigSection as _Section
from grpo_common.config import load_config
from grpo_common.registry import Registry
from grpo_common.weights.codec import DEFAULT_BUCKET_BYTES
from pydantic import Field, field_validator, model_validator

from grpo_learner.advantages import ADVANTAGE_ESTIMATORS, COMBINE_MODES
from grpo_learner.config.environment import EnvironmentConfig
from grpo_learner.config.eval import EvalConfig
from grpo_learner.config.lora import LoraConfig
from grpo_learner.config.reward import RewardConfig
from grpo_learner.losses import LOSSES, SAMPLER_WEIGHT_LEVELS

ENV_PREFIX = "GRPO_LEARNER_"

logger = logging.getLogger(__name__)


class ModelConfig(_Section):
    name_or_path: str = Field(..., min_length=1, description="HF hub name or local directory")
    tokenizer: str | None = Field(None, description="defaults to name_or_path")
    gradient_checkpointing: bool = False
    trust_remote_code: bool = False
    lora: LoraConfig = Field(default_factory=LoraConfig)  # [model.lora], see config/lora.py


class DataConfig(_Section):
    path: Path | None = Field(None, description="JSONL or Parquet file of problems")
    hub_name: str | None = Field(None, description="a `datasets` name instead of a file, e.g. openai/gsm8k")
    hub_config: str | None = Field(None, description="the dataset's config, e.g. main for openai/gsm8k")
    split: str = Field("train", description="split of the hub dataset")
    question_field: str | None = Field(None, description="default: first of question/problem/prompt")
    answer_field: str | None = Field(None, description="default: first of answer/solution")
    id_field: str | None = Field(None, description="default: the row number")
    prompt_template: str = Field("{question}", description="formatted with question=...")
    apply_chat_template: bool = True
    shuffle: bool = True

    @field_validator("prompt_template")
    @classmethod
    def _formats_with_question_only(cls, template: str) -> str:
        try:
            template.format(question="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"{template!r} does not format with question= alone ({type(exc).__name__}: {exc}); "
                "use {question} for the problem and {{ }} for literal braces"
            ) from None
        return template


# --- [reward]: what the reward service computes, sent as grpo.v1.RewardSpec with every request -------


class SamplingConfig(_Section):
    temperature: float = Field(1.0, gt=0, description="> 0: the learner needs the sampling distribution")
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(-1, ge=-1, description="-1 or 0: off")
    max_new_tokens: int = Field(256, gt=0)
    stop_token_ids: list[int] = Field(default_factory=list)


class RolloutConfig(_Section):
    addresses: list[str] = Field(default_factory=list, description="host:port of every rollout service")
    group_size: int = Field(8, ge=2, description="completions per prompt (G), at least 2")
    prompts_per_step: int = Field(16, ge=1)
    max_staleness: int = Field(0, ge=0, description="k: generation for step n+k may run while training n")
    request_timeout_s: float = Field(600.0, gt=0, description="deadline of one Generate call")
    # A restarted rollout service needs time to load its model and receive the current weights:
    # the defaults keep re-sending for about 3 minutes before the step fails.
    max_attempts: int = Field(40, ge=1, description="tries per prompt before the step fails")
    backoff_s: float = Field(0.5, gt=0, description="first re-send delay, doubled per attempt")
    max_backoff_s: float = Field(5.0, gt=0, description="cap of the re-send delay")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    environment: EnvironmentConfig = Field(default_factory=EnvironmentConfig)  # environment.py
    channel: ChannelConfig = Field(default_factory=ChannelConfig)
    # Many rollout services (grpo_learner.rollouts.pool): health/load probes and hot-add/remove.
    addresses_file: Path | None = Field(
        None, description="host:port per line, re-read while training: new lines join, removed ones drain"
    )
    addresses_poll_s: float = Field(2.0, gt=0, description="how often addresses_file is checked for changes")
    probe_interval_s: float = Field(
        0.5, ge=0, description="health + load (GetInfo) probe period per service; 0: no probes"
    )
    probe_timeout_s: float = Field(2.0, gt=0, description="deadline of one probe RPC")
    unhealthy_after: int = Field(3, ge=1, description="failed probes in a row before a service is DOWN")

    @field_validator("addresses")
    @classmethod
    def _host_port(cls, addresses: list[str]) -> list[str]:
        return parse_addresses(addresses)


class OptimConfig(_Section):
    lr: float = Field(1e-6, gt=0)
    warmup_steps: int = Field(0, ge=0, description="optimizer steps of linear warm-up from 0")
    schedule: Literal["constant", "linear", "cosine"] = "constant"
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="floor of linear/cosine decay, x lr")
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.99)
    adam_eps: float = Field(1e-8, gt=0)
    max_grad_norm: float | None = Field(1.0, gt=0, description="None: no clipping")

    @field_validator("betas")
    @classmethod
    def _betas_in_unit_interval(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"each beta must be in [0, 1), got {betas}")
        return betas


class AdvantageConfig(_Section):
    scaling: str = Field("group", description="registered estimator: group, batch, none")
    eps: float = Field(1e-4, gt=0)
    reward_weights: dict[str, float] = Field(
        default_factory=dict, description="component name -> weight; empty: the completion's scalar reward"
    )
    combine: str = Field("sum_then_normalize", description="sum_then_normalize or normalize_then_sum")

    @field_validator("scaling")
    @classmethod
    def _known_scaling(cls, name: str) -> str:
        return _registered(name, ADVANTAGE_ESTIMATORS, "advantage estimator")

    @field_validator("combine")
    @classmethod
    def _known_combine(cls, name: str) -> str:
        return _registered(name, COMBINE_MODES, "combine mode")


class SamplerCorrectionConfig(_Section):
    """Importance weight pi_old / pi_sampler against the sampler's logprobs (TIS / masking)."""

    mode: Literal["none", "truncate", "mask"] = "none"
    level: str = Field("token", description="token, sequence or geometric")
    cap: float = Field(2.0, gt=1, description="truncate: w <- min(w, cap); mask: drop w outside [1/cap, cap]")

    @field_validator("level")
    @classmethod
    def _known_level(cls, name: str) -> str:
        return _registered(name, SAMPLER_WEIGHT_LEVELS, "sampler weight level")


class LossConfig(_Section):
    loss_type: str = Field("grpo", description="registered loss")
    epsilon_low: float = Field(0.2, ge=0, lt=1)
    epsilon_high: float = Field(0.2, ge=0, description="clip-higher (DAPO: 0.28)")
    delta: float | None = Field(None, gt=1, description="two-sided clip: ratio capped at delta when A < 0")
    beta: float = Field(0.0, ge=0, description="k3 KL weight; 0 creates no reference model")
    num_iterations: int = Field(1, ge=1, description="mu: optimizer steps on each batch")
    mask_truncated: bool = Field(False, description="completions that hit max_new_tokens get no loss")
    advantage: AdvantageConfig = Field(default_factory=AdvantageConfig)
    sampler_correction: SamplerCorrectionConfig = Field(default_factory=SamplerCorrectionConfig)

    @field_validator("loss_type")
    @classmethod
    def _known_loss(cls, name: str) -> str:
        return _registered(name, LOSSES, "loss")


class TrainConfig(_Section):
    max_steps: int = Field(100, ge=1)
    micro_batch_size: int = Field(8, ge=1, description="sequences per forward/backward")
    seed: int = 0
    dynamic_sampling: bool = Field(False, description="DAPO: drop zero-variance groups and refill")
    max_refill_rounds: int = Field(3, ge=0, description="extra requests per step to fill a short batch")
    logprob_chunk_tokens: int = Field(4096, ge=1, description="tokens per lm_head chunk")
    share_prompt_forward: bool = Field(
        True,
        description="run each group's prompt through the model once and attend to its KV from all G "
        "completions (off: one pass per sequence; gradient checkpointing always uses one pass)",
    )
    device: str = Field("auto", description="auto: cuda if available, else cpu")
    torch_threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads of the learner's torch ops (None: torch's default, one per core); cap it "
        "when rollout or reward processes share the cores, or their threads and ours contend",
    )


class CheckpointConfig(_Section):
    dir: Path | None = Field(None, description="default: RUN_DIR/checkpoints")
    interval: int = Field(50, ge=1, description="steps between checkpoints")
    keep_last: int = Field(2, ge=1)
    resume: bool = Field(
        False, description="continue from the latest checkpoint in dir (grpo train --resume)"
    )


class PushConfig(_Section):
    every: int = Field(1, ge=1, description="push weights every k steps")
    deadline_s: float = Field(120.0, gt=0, description="longest a push may hold up training")
    bucket_bytes: int = Field(DEFAULT_BUCKET_BYTES, ge=1024, description="weight-stream bucket size")
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(None, description="None: as trained")
    # Weights over NCCL into SGLang engines (grpo_learner.weight_sync.nccl_sync); "grpc" is the portable path.
    transport: Literal["grpc", "nccl"] = Field(
        "grpc", description="nccl: rank 0 broadcasts into the SGLang engines' weight-update group"
    )
    nccl_master_address: str | None = Field(
        None, description="this learner's address as the SGLang engines reach it (it hosts the TCP store)"
    )
    nccl_master_port: int = Field(0, ge=0, le=65535, description="TCP store port; 0: a free port")
    nccl_group_name: str = Field("weight_update_group", min_length=1)
    nccl_backend: Literal["nccl", "gloo"] = Field("nccl", description="gloo: CPU tensors (tests only)")
    nccl_bucket_bytes: int = Field(1 << 30, ge=1024, description="bytes per broadcast bucket (0.5-2 GB)")
    nccl_timeout_s: float = Field(600.0, gt=0, description="rendezvous, broadcast and RPC deadline")
    lora_mode: Literal["merged", "adapter"] = Field(
        "merged",
        description="a LoRA policy: merged targeted tensors, or the adapter itself (sglang, grpc only)",
    )

    @model_validator(mode="after")
    def _nccl_needs_an_address(self) -> PushConfig:
        if self.transport == "nccl" and not self.nccl_master_address:
            raise ValueError(
                "push.transport = 'nccl' needs push.nccl_master_address: the learner's address as the "
                "SGLang engines reach it"
            )
        if self.transport == "nccl" and self.lora_mode == "adapter":
            raise ValueError(
                "push.lora_mode = 'adapter' needs push.transport = 'grpc': the NCCL group carries model "
                "weights only"
            )
        return self


class LocalServicesConfig(_Section):
    """When rollout.addresses is empty, `grpo train` starts one reward and one rollout service itself.

    They run as child processes on free loopback ports with the same binaries and flags a user
    would start by hand (`grpo-reward serve`, `grpo-rollout serve`), serving model.name_or_path.
    """

    generator: Literal["hf", "sglang"] = Field(
        "hf", description="rollout backend: hf (CPU/GPU) or sglang (GPU)"
    )
    device: str = Field("cpu", description="hf backend: torch device of the rollout service")
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(None, description="hf: model dtype")
    torch_threads: int | None = Field(
        None, ge=1, description="hf: CPU threads of the rollout service (None on CPU: half the cores)"
    )
    reward_workers: int = Field(2, ge=1, description="verification worker processes")
    rollout_args: list[str] = Field(default_factory=list, description="extra `grpo-rollout serve` flags")
    ready_timeout_s: float = Field(600.0, gt=0, description="how long a service may take to start")


class DistributedConfig(_Section):
    """The learner on several processes (torchrun / `grpo train --nproc N`); ignored in one process."""

    timeout_s: float = Field(
        600.0,
        gt=0,
        description="longest wait in one collective before a rank gives up: a dead or hung rank "
        "fails the job after at most this long (rank 0 keeps idle ranks alive while it waits for "
        "rollouts, so generation time does not count)",
    )


class LearnerConfig(_Section):
    model: ModelConfig
    data: DataConfig = Field(default_factory=DataConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    push: PushConfig = Field(default_factory=PushConfig)
    local_services: LocalServicesConfig = Field(default_factory=LocalServicesConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    run_dir: Path = Path("runs/default")
    tensorboard: bool = True

    @model_validator(mode="before")
    @classmethod
    def _data_task_moved(cls, values: Any) -> Any:
        """`data.task` (before [reward] existed) is read as `reward.task`; both at once must agree."""
        if not isinstance(values, dict) or not isinstance(values.get("data"), dict):
            return values
        if "task" not in values["data"]:
            return values
        data = dict(values["data"])
        task = data.pop("task")
        reward = dict(values.get("reward") or {})
        if "task" in reward and reward["task"] != task:
            raise ValueError(
                f"data.task {task!r} and reward.task {reward['task']!r} disagree; data.task is the old "
                "name of reward.task: keep only reward.task"
            )
        logger.warning("data.task is now reward.task; reading data.task = %r as reward.task", task)
        reward["task"] = task
        return {**values, "data": data, "reward": reward}

    @model_validator(mode="after")
    def _rewards_weighed_exist(self) -> LearnerConfig:
        """Every name in loss.advantage.reward_weights must be computed: `reward` or a [reward] component.

        With combine = normalize_then_sum and no reward_weights, the [reward] components' weights are
        the advantage weights (each component normalised alone), so the weights are given once.
        """
        advantage = self.loss.advantage
        computed = set(self.reward.component_weights()) or {"correctness"}
        unknown = sorted(set(advantage.reward_weights) - computed - {"reward"})
        if unknown:
            raise ValueError(
                f"loss.advantage.reward_weights names {unknown}, which the reward service is not asked "
                f"to compute; add them to reward.components (computed now: {sorted(computed)}, plus "
                "'reward', the weighted sum)"
            )
        if advantage.combine == "normalize_then_sum" and not advantage.reward_weights:
            advantage.reward_weights = self.reward.component_weights()
        return self

    @model_validator(mode="after")
    def _consistent(self) -> LearnerConfig:
        lag = self.push.every - 1
        if lag > self.rollout.max_staleness:
            raise ValueError(
                f"push.every={self.push.every} lets rollouts lag {lag} versions behind, beyond "
                f"rollout.max_staleness={self.rollout.max_staleness}; raise max_staleness to >= {lag}"
            )
        weights = self.loss.advantage.reward_weights
        if weights and not any(w != 0 for w in weights.values()):
            raise ValueError("loss.advantage.reward_weights: every weight is 0, no reward would be learnt")
        if self.push.transport == "nccl" and self.rollout.addresses_file is not None:
            raise ValueError(
                "rollout.addresses_file cannot be used with push.transport='nccl': the NCCL group is "
                "formed once over rollout.addresses; list the services there, or use push.transport='grpc'"
            )
        return self

    @property
    def checkpoint_dir(self) -> Path:
        return self.checkpoint.dir or self.run_dir / "checkpoints"


def _registered(name: str, registry: Registry[Any], what: str) -> str:
    del what  # the registry names its own kind
    registry.get_item(name)  # UnknownName (a ValueError) lists what is registered
    return name


def load_learner_config(
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> LearnerConfig:
    """File < GRPO_LEARNER_* environment < dotted `overrides` ({"loss.beta": 0.04}); ConfigError if bad."""
    return load_config(
        LearnerConfig, config_file=config_file, env_prefix=ENV_PREFIX, overrides=overrides, environ=environ
    )
