"""The policy (and reference) model sharded with PyTorch FSDP2 (`torch.distributed.fsdp.fully_shard`).

Layout: every decoder layer is its own FSDP unit (all-gathered just before it runs, freed after),
then a root unit owns the rest (embeddings, final norm, lm_head; tied or not).

The root is a small wrapper module, `CompletionLogprobs`, whose forward is the learner's logprob
computation (decoder, then lm_head on completion positions only, in checkpointed chunks). It has
to be: that computation calls the decoder and lm_head directly instead of the causal LM's own
forward, and FSDP only gathers the root's parameters around the root's forward. The wrapper adds no
parameters and no name prefix to anything users see: weights and checkpoints are named from the
Hugging Face model itself.

Gradients: FSDP's reduce-scatter *sums* over ranks (divide factor 1, plain SUM). Each rank's loss is already
its share of the batch loss (batch-wide counts in the `Normalizer`), so the sum is exactly the
gradient one process would compute on the whole batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor

from grpo_learner.config import SamplingConfig, TrainConfig
from grpo_learner.distributed.process_group import Ranks
from grpo_learner.grpo.batching import MicroBatch
from grpo_learner.grpo.logprobs import completion_logprobs
from grpo_learner.grpo.packing import PackedRows

_LAYOUT_FIELDS = ("packed", "padded")  # the step's layout, passed by name beside the tensors
_BATCH_FIELDS = [f.name for f in fields(MicroBatch) if f.name not in _LAYOUT_FIELDS]


class CompletionLogprobs(nn.Module):
    """FSDP root: forward(micro-batch tensors) = completion_logprobs(lm, micro-batch)."""

    def __init__(self, lm: nn.Module, train: TrainConfig, sampling: SamplingConfig) -> None:
        super().__init__()
        self.lm = lm
        self.train_config = train  # not `train`: nn.Module.train() switches training mode
        self.sampling = sampling

    def forward(
        self,
        *tensors: Tensor,
        packed: PackedRows | None = None,
        padded: bool = False,
        with_entropy: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        batch = MicroBatch(**dict(zip(_BATCH_FIELDS, tensors, strict=True)), packed=packed, padded=padded)
        return completion_logprobs(self.lm, batch, self.train_config, self.sampling, with_entropy)


def decoder_layers(lm: nn.Module) -> list[nn.Module]:
    """The repeated transformer blocks: `lm.get_decoder().layers` (Llama, Qwen, Mistral, Gemma...)."""
    layers = getattr(lm.get_decoder(), "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise ValueError(
            f"{type(lm).__name__}: FSDP sharding needs the decoder's blocks at get_decoder().layers; "
            "this architecture is not supported by the distributed learner yet"
        )
    return list(layers)


def shard(
    lm: nn.Module, mesh: DeviceMesh, train: TrainConfig, sampling: SamplingConfig
) -> CompletionLogprobs:
    """Shard `lm` in place (its parameters become DTensors) and return its FSDP root."""
    for layer in decoder_layers(lm):
        fully_shard(layer, mesh=mesh)
    root = CompletionLogprobs(lm, train, sampling)
    fully_shard(root, mesh=mesh)
    for module in root.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)  # a plain SUM (gloo has no PREMUL_SUM)
    return root


def device_mesh(ranks: Ranks) -> DeviceMesh:
    return init_device_mesh(ranks.device.type, (ranks.world_size,), mesh_dim_names=("fsdp",))


@dataclass
class FsdpParallel:
    """`Parallelism` over FSDP2-sharded models; `wrap` each model before building its optimizer."""

    ranks: Ranks
    train: TrainConfig
    sampling: SamplingConfig
    mesh: DeviceMesh | None = None
    roots: dict[int, CompletionLogprobs] = field(default_factory=dict)

    @property
    def rank(self) -> int:
        return self.ranks.rank

    @property
    def world_size(self) -> int:
        return self.ranks.world_size

    def wrap(self, lm: nn.Module) -> nn.Module:
        """Shard `lm` in place; returns it (now with DTensor parameters) for the optimizer and state."""
        if self.mesh is None:
            self.mesh = device_mesh(self.ranks)
        self.roots[id(lm)] = shard(lm, self.mesh, self.train, self.sampling)
        return lm

    def root(self, lm: nn.Module) -> CompletionLogprobs:
        return self.roots[id(lm)]

    def logprobs(
        self, model: nn.Module, batch: MicroBatch, with_entropy: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """Through the model's FSDP root (its sections fixed there at wrap time)."""
        tensors = (getattr(batch, name) for name in _BATCH_FIELDS)
        layout = {name: getattr(batch, name) for name in _LAYOUT_FIELDS}
        return self.root(model)(*tensors, **layout, with_entropy=with_entropy)

    def sum_across_ranks(self, values: dict[str, float]) -> dict[str, float]:
        keys = sorted(values)  # the same keys on every rank: the loss decides them, not the data
        local = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.ranks.device)
        dist.all_reduce(local)
        return dict(zip(keys, local.tolist(), strict=True))

    def clip_grad_norm(self, params: Iterable[nn.Parameter], max_norm: float) -> float:
        """Global L2 norm over all shards (a DTensor reduction), then the usual clip."""
        params = list(params)
        total = torch.nn.utils.get_total_norm([p.grad for p in params])
        if isinstance(total, DTensor):
            total = total.full_tensor()
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
        return float(total)
