"""One GRPO update on a batch of scored groups.

    advantages from rewards -> sequences -> length-bucketed micro-batches
    old logprobs once (only when mu > 1; with mu = 1 pi_old is the current policy, detached)
    reference logprobs once (only when beta > 0; LoRA: the same model, adapters disabled)
    mu times: for each micro-batch: logprobs -> loss share -> backward;  clip grads; AdamW; schedule

The loss function comes from the `LOSSES` registry by name; nothing here branches on the loss type.

On several ranks (torch.distributed + FSDP2, see `fsdp.py`) every rank computes the advantages on
the whole batch, then trains only its shard of the sequences (`sequence_shards`); the `Normalizer`
carries batch-wide counts and FSDP sums the ranks' gradients, so each rank's backward is its share
of the very loss one process would compute on the whole batch.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from grpo_learner.config import AdvantageConfig, LearnerConfig, SamplerCorrectionConfig, TrainConfig
from grpo_learner.data.rollout_data import SCALAR_REWARD, GroupError, ScoredGroup, reward_components
from grpo_learner.distributed.sequence_shards import balanced_shards
from grpo_learner.grpo.advantages import compute_advantages, weighted_reward
from grpo_learner.grpo.batching import MicroBatch, TrainSequence, collate, length_buckets
from grpo_learner.grpo.layout_cost import DecoderCost, packing_pays
from grpo_learner.grpo.logprobs import layout_tokens, with_layout
from grpo_learner.grpo.losses import (
    LOSSES,
    LossOutput,
    Normalizer,
    PolicyBatch,
    correction_scope,
    sampler_mismatch_sums,
    sampler_weights,
)
from grpo_learner.grpo.nonfinite import gradient_error, nonfinite_parameters, parameter_error
from grpo_learner.grpo.parallelism import Parallelism, SingleProcess
from grpo_learner.lora.adapters import adapters_disabled, has_adapters
from grpo_learner.monitoring.phase_timer import PhaseTimer, device_sync


def reward_weights(advantage: AdvantageConfig) -> dict[str, float]:
    """`loss.advantage.reward_weights`, or (empty) the service's weighted sum alone, weight 1."""
    return dict(advantage.reward_weights) or {SCALAR_REWARD: 1.0}


@dataclass
class PreparedBatch:
    micro_batches: list[MicroBatch]
    normalizer: Normalizer
    metrics: dict[str, float]  # reward statistics, known before any forward pass
    # prompt + completion tokens of the whole batch (all ranks), environment tokens included: the
    # forward and backward passes process them as they do the prompt's (tokens_per_second)
    input_tokens: int = 0


def prepare_batch(
    groups: Sequence[ScoredGroup],
    config: LearnerConfig,
    device: torch.device,
    *,
    pad_token_id: int = 0,
    rank: int = 0,
    world_size: int = 1,
    policy_version: int | None = None,
    decoder_cost: DecoderCost | None = None,
) -> PreparedBatch:
    """Advantages, training sequences and micro-batches for `groups` (all of one group size), as the
    run's `[loss]` and `[train]` say.

    Each token's lag is `policy_version - v_t`: how many versions the weights that sampled it are
    behind the learner's (whose logprobs are pi_old); the sampler correction and the `sampler/*`
    metrics read it. None (a batch without a learner version: tests, benchmarks) takes the batch's
    newest token as the learner's version.

    With world_size > 1: advantages and counts over the whole batch, micro-batches of this rank's
    shard only, padded with loss-free filler micro-batches to the busiest rank's count (FSDP needs
    every rank to run the same number of forward and backward passes).

    Everything is built and counted on the CPU (each micro-batch's layout too: `with_layout`), then
    moved to `device` once: no count is read back from the device.
    """
    sizes = {len(g.completions) for g in groups}
    if len(sizes) != 1:
        raise GroupError(f"a batch mixes group sizes {sorted(sizes)}; every group needs rollout.group_size")
    advantage = config.loss.advantage
    weights = reward_weights(advantage)
    components = reward_components(groups, weights)
    advantages = compute_advantages(components, weights, advantage.scaling, advantage.combine, advantage.eps)
    if policy_version is None:
        policy_version = max(
            max(group.token_versions(c), default=group.policy_version)
            for group in groups
            for c in group.completions
        )
    sequences = [
        TrainSequence(
            prompt_ids=group.prompt_token_ids,
            completion_ids=completion.token_ids,
            sampler_logprobs=completion.sampler_logprobs,
            advantage=float(advantages[g, c]),
            counts=not (config.loss.mask_truncated and completion.truncated),
            model_mask=completion.loss_mask,
            token_lag=tuple(policy_version - v for v in group.token_versions(completion)),
        )
        for g, group in enumerate(groups)
        for c, completion in enumerate(group.completions)
    ]
    pack = _packs_this_step(sequences, config.train, decoder_cost)
    if world_size == 1:
        buckets = length_buckets(sequences, config.train.micro_batch_size)
        micro_batches = [_micro_batch([sequences[i] for i in b], config, pad_token_id, pack) for b in buckets]
        normalizer = Normalizer(
            total_sequences=len(sequences),
            total_tokens=max(1, int(sum(mb.loss_mask.sum() for mb in micro_batches))),
            num_micro_batches=len(micro_batches),
            max_completion_length=config.rollout.sampling.max_new_tokens,
        )
    else:
        micro_batches, normalizer = _shard_micro_batches(
            sequences, config, pad_token_id, rank, world_size, pack
        )
    rewards = weighted_reward(components, weights)
    group_std = rewards.std(dim=1)
    lengths = [c.model_tokens for g in groups for c in g.completions]  # the model's tokens only
    truncated = [c.truncated for g in groups for c in g.completions]
    metrics = {
        "reward": float(rewards.mean()),
        "reward_std": float(group_std.mean()),
        "frac_reward_zero_std": float((group_std == 0).double().mean()),
        "completions/mean_length": sum(lengths) / len(lengths),
        "completions/min_length": float(min(lengths)),
        "completions/max_length": float(max(lengths)),
        "completions/median_length": float(statistics.median(lengths)),
        "completions/clipped_ratio": sum(truncated) / len(truncated),
        "correct": sum(c.correct for g in groups for c in g.completions) / len(lengths),
        "num_groups": float(len(groups)),
    }
    for name in weights:
        if name != SCALAR_REWARD:
            metrics[f"rewards/{name}/mean"] = float(components[name].mean())
    # What the layout costs, over this rank's micro-batches only: positions through every layer, and padding
    computed, real = map(sum, zip(*(layout_tokens(mb, config.train) for mb in micro_batches), strict=True))
    metrics["tokens/computed"] = float(computed)
    if config.train.packing:
        metrics["tokens/packed"] = float(pack)  # 0: packing would have computed more this step
    metrics["tokens/padding_fraction"] = 1.0 - real / computed
    input_tokens = sum(s.length for s in sequences)
    metrics["tokens/generated"] = float(sum(lengths))  # sampled by the model, over the whole batch
    metrics["tokens/trained"] = float(input_tokens)  # prompt + completion per sequence, no padding
    return PreparedBatch([mb.to(device) for mb in micro_batches], normalizer, metrics, input_tokens)


def _packs_this_step(
    sequences: list[TrainSequence], train: TrainConfig, decoder_cost: DecoderCost | None
) -> bool:
    """Under train.packing: whether this step packs. "auto" with the model's `decoder_cost`: when
    that computes less (layout_cost.py), decided from the whole batch so every rank agrees; true,
    or "auto" from a caller that gave no cost: always."""
    if not train.packing:
        return False
    if train.packing != "auto" or decoder_cost is None:
        return True
    buckets = length_buckets(sequences, train.micro_batch_size)
    micro_batches = [[sequences[i] for i in b] for b in buckets]
    return packing_pays(micro_batches, train.packing_row_tokens, train.share_prompt_forward, decoder_cost)


def _micro_batch(
    sequences: list[TrainSequence], config: LearnerConfig, pad_token_id: int, pack: bool
) -> MicroBatch:
    """`sequences` collated on the CPU, with their layout built (once for every forward of the step)."""
    return with_layout(collate(sequences, pad_token_id), config.train, pack)


def _shard_micro_batches(
    sequences: list[TrainSequence],
    config: LearnerConfig,
    pad_token_id: int,
    rank: int,
    world_size: int,
    pack: bool,
) -> tuple[list[MicroBatch], Normalizer]:
    """This rank's micro-batches (on the CPU) and the batch-wide normaliser (world_size 1: FSDP sums
    gradients)."""
    mbs = config.train.micro_batch_size
    shards = balanced_shards([s.length for s in sequences], world_size)
    counts = [math.ceil(len(shard) / mbs) for shard in shards]
    mine = [sequences[i] for i in shards[rank]]
    micro_batches = [
        _micro_batch([mine[i] for i in b], config, pad_token_id, pack) for b in length_buckets(mine, mbs)
    ]
    # A filler is one pad token whose loss mask is 0: it contributes exactly nothing to the loss.
    filler = TrainSequence((pad_token_id,), (pad_token_id,), (0.0,), 0.0, counts=False)
    missing = max(counts) - len(micro_batches)
    micro_batches += [_micro_batch([filler], config, pad_token_id, pack)] * missing
    normalizer = Normalizer(
        total_sequences=len(sequences),
        total_tokens=max(1, sum(s.model_tokens for s in sequences if s.counts)),
        num_micro_batches=sum(counts),
        max_completion_length=config.rollout.sampling.max_new_tokens,
    )
    return micro_batches, normalizer


def micro_batch_sampler_weights(
    old_logprobs: torch.Tensor, mb: MicroBatch, correction: SamplerCorrectionConfig
) -> torch.Tensor | None:
    """`[loss.sampler_correction]`'s weights for one micro-batch: each token against the sampler
    logprob of the version that sampled it, over the tokens `tokens` names (all, or only those
    another version than the learner's sampled: `mb.token_lag != 0`); see `losses.sampler_weights`."""
    return sampler_weights(
        old_logprobs,
        mb.sampler_logprobs,
        mb.loss_mask,
        correction.mode,
        correction.level,
        correction.cap,
        correction_scope(mb.token_lag, correction.tokens),
    )


class Trainer:
    """Holds the policy, its optimizer and schedule, and an optional frozen reference model (with
    LoRA adapters on the policy and no reference, the reference is the policy with them disabled).

    Every setting is read from the run's validated `config` (`[loss]`, `[train]`, `[optim]`,
    `[rollout.sampling]`) when it is used: nothing is copied out of it."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        config: LearnerConfig,
        reference: nn.Module | None = None,
        parallel: Parallelism | None = None,
        pad_token_id: int = 0,
    ) -> None:
        if config.loss.beta > 0 and reference is None and not has_adapters(model):
            raise ValueError("loss.beta > 0 needs a reference model (or LoRA adapters); pass reference=")
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.config = config
        self.pad_token_id = pad_token_id
        self.reference = reference
        self.parallel = parallel or SingleProcess(config.train, config.rollout.sampling)
        self.device = next(model.parameters()).device
        self.loss_fn = LOSSES[config.loss.loss_type]
        # train.packing = "auto": whether packing pays, step by step (layout_cost.py)
        self.decoder_cost = DecoderCost.of(model.config) if config.train.packing == "auto" else None

    def _autocast(self) -> contextlib.AbstractContextManager:
        """bf16 compute over the fp32 weights (train.autocast; auto: on cuda only)."""
        wanted = self.config.train.autocast
        if wanted == "bfloat16" or (wanted == "auto" and self.device.type == "cuda"):
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _logprobs(
        self, model: nn.Module, mb: MicroBatch, with_entropy: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        with self._autocast():
            return self.parallel.logprobs(model, mb, with_entropy)

    @torch.no_grad()
    def _frozen_logprobs(
        self, model: nn.Module, batch: PreparedBatch, timer: PhaseTimer | None = None
    ) -> list[torch.Tensor]:
        with (timer or PhaseTimer()).phase("forward"):
            return [self._logprobs(model, mb, with_entropy=False)[0] for mb in batch.micro_batches]

    def reference_logprobs(self, batch: PreparedBatch, timer: PhaseTimer | None = None) -> list[torch.Tensor]:
        """From the reference model, or (LoRA, no reference) from the policy with its adapters off."""
        if self.reference is not None:
            return self._frozen_logprobs(self.reference, batch, timer)
        with adapters_disabled(self.model):
            return self._frozen_logprobs(self.model, batch, timer)

    def accumulate_gradients(
        self,
        batch: PreparedBatch,
        old: list[torch.Tensor] | None = None,
        ref: list[torch.Tensor] | None = None,
        timer: PhaseTimer | None = None,
    ) -> dict[str, float]:
        """Backward of every micro-batch's loss share (gradients add up to the batch gradient)."""
        timer = timer or PhaseTimer()
        sums: dict[str, float] = {"loss": 0.0, "entropy": 0.0}
        for index, mb in enumerate(batch.micro_batches):
            with timer.phase("forward"):
                entropy, out = self._micro_batch_loss(batch, mb, index, old, ref)
            with timer.phase("backward"):
                out.loss.backward()
            sums["loss"] += float(out.loss.detach())
            sums["entropy"] += float((entropy * mb.loss_mask).sum())
            for key, value in out.token_sums.items():
                sums[key] = sums.get(key, 0.0) + value
        sums = self.parallel.sum_across_ranks(sums)
        tokens = batch.normalizer.total_tokens
        return {key: value if key == "loss" else value / tokens for key, value in sums.items()}

    def _micro_batch_loss(
        self,
        batch: PreparedBatch,
        mb: MicroBatch,
        index: int,
        old: list[torch.Tensor] | None,
        ref: list[torch.Tensor] | None,
    ) -> tuple[torch.Tensor, LossOutput]:
        """Forward of one micro-batch: its token entropies and its loss share."""
        loss = self.config.loss
        logprobs, entropy = self._logprobs(self.model, mb)
        old_logprobs = old[index] if old is not None else logprobs.detach()
        policy_batch = PolicyBatch(
            logprobs=logprobs,
            old_logprobs=old_logprobs,
            advantages=mb.advantages,
            mask=mb.loss_mask,
            ref_logprobs=ref[index] if ref is not None else None,
            sampler_weights=micro_batch_sampler_weights(old_logprobs, mb, loss.sampler_correction),
        )
        out = self.loss_fn(policy_batch, batch.normalizer, loss)
        out.token_sums.update(
            sampler_mismatch_sums(old_logprobs, mb.sampler_logprobs, mb.loss_mask, mb.token_lag)
        )
        return entropy, out

    def optimizer_step(self) -> float:
        """Clip, step, schedule; returns the gradient norm before clipping.

        Raises NonFiniteUpdate (see nonfinite.py) before the step when a gradient is NaN/inf (the
        parameters stay as they were) and after it when a parameter is."""
        params = [p for p in self.model.parameters() if p.grad is not None]
        max_grad_norm = self.config.optim.max_grad_norm
        max_norm = max_grad_norm if max_grad_norm is not None else math.inf
        grad_norm = self.parallel.clip_grad_norm(params, max_norm) if params else 0.0
        if not math.isfinite(grad_norm):  # the same global norm on every rank: all stop alike
            self.optimizer.zero_grad(set_to_none=True)
            raise gradient_error(grad_norm)
        self.optimizer.step()
        bad = nonfinite_parameters(self.model.named_parameters())
        total = self.parallel.sum_across_ranks({"nonfinite_parameters": float(len(bad))})
        if total["nonfinite_parameters"]:
            raise parameter_error(bad, int(total["nonfinite_parameters"]))
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def update(self, groups: Sequence[ScoredGroup], policy_version: int | None = None) -> dict[str, float]:
        """mu optimizer steps on `groups` with the model at `policy_version` (see `prepare_batch`);
        returns TRL-named metrics (means over the mu passes)."""
        start = time.perf_counter()
        timer = PhaseTimer(sync=device_sync(self.device))
        self.model.train()
        batch = prepare_batch(
            groups,
            self.config,
            self.device,
            pad_token_id=self.pad_token_id,
            rank=self.parallel.rank,
            world_size=self.parallel.world_size,
            policy_version=policy_version,
            decoder_cost=self.decoder_cost,
        )
        mu = self.config.loss.num_iterations
        old = self._frozen_logprobs(self.model, batch, timer) if mu > 1 else None
        wants_reference = self.reference is not None or self.config.loss.beta > 0
        ref = self.reference_logprobs(batch, timer) if wants_reference else None
        totals: dict[str, float] = {}
        lr = self.optimizer.param_groups[0]["lr"]
        for _ in range(mu):
            self.optimizer.zero_grad(set_to_none=True)
            stats = self.accumulate_gradients(batch, old, ref, timer)
            with timer.phase("optimizer"):
                stats["grad_norm"] = self.optimizer_step()
            for key, value in stats.items():
                totals[key] = totals.get(key, 0.0) + value / mu
        step_time = time.perf_counter() - start
        tokens = batch.input_tokens * mu
        return {
            **batch.metrics,
            **totals,
            **timer.metrics(),
            "learning_rate": lr,
            "step_time": step_time,
            "tokens_per_second": tokens / step_time,
        }
