"""The one interface every generation backend implements, and the data it exchanges.

The service never knows whether completions come from transformers on a CPU or from SGLang on a
GPU: both backends take tokenised prompts and return token ids, the sampler's logprobs, a finish
reason and the weight version that produced each completion. The interface is async because the
service is a grpc.aio server: the SGLang backend awaits HTTP calls, the transformers backend runs
its forward passes in a worker thread.

Logprob definition (shared with SGLang and the learner): `log_softmax(logits / temperature)` of the
sampled token, taken *before* top-k / top-p filtering; with temperature 0 (greedy) the logprobs are
those of temperature 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch
from grpo_common.token_versions import VersionRuns
from grpo_common.weights.codec import WeightStreamError, check_compatible
from grpo_common.weights.delta import DecodedDelta, ResolvedDelta, resolve

if TYPE_CHECKING:
    from grpo_rollout.lora_adapters import AdapterSpec


class FinishReason(StrEnum):
    STOP = "stop"  # EOS or a stop token was produced (it is the last token id)
    LENGTH = "length"  # max_new_tokens reached
    ABORT = "abort"  # the backend aborted the sequence; the tokens so far are returned


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings of one generate call; `validate()` explains what is wrong."""

    max_new_tokens: int
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0  # 1 = off
    top_k: int = -1  # -1 = off
    stop_token_ids: tuple[int, ...] = ()
    seed: int | None = None  # None = nondeterministic
    # Partial rollout (v1.4): a weight update pauses this call at a token boundary instead of waiting
    # for it; its sequences continue under the new weights and record each token's version.
    partial: bool = False

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def validate(self) -> None:
        """Raise ValueError naming the field; the service maps it to INVALID_ARGUMENT."""
        if self.max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be > 0, got {self.max_new_tokens}")
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if not math.isfinite(self.top_p) or not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k == 0 or self.top_k < -1:
            raise ValueError(f"top_k must be -1 (off) or >= 1, got {self.top_k}")
        if any(token < 0 for token in self.stop_token_ids):
            raise ValueError(f"stop_token_ids must be >= 0, got {list(self.stop_token_ids)}")
        if self.seed is not None and not 0 <= self.seed < 2**64:
            raise ValueError(f"seed must be in [0, 2**64), got {self.seed}")


@dataclass(frozen=True)
class GeneratedCompletion:
    token_ids: list[int]  # sampled tokens, prompt excluded; a stop token is the last one
    logprobs: list[float]  # the sampler's logprob of each token (same length)
    finish_reason: FinishReason
    weight_version: int  # the weights that produced every token (partial: the oldest token's)
    # Partial calls: (version, tokens) runs covering token_ids in order (grpo_common.token_versions);
    # empty: every token is weight_version's.
    version_runs: VersionRuns = ()


@dataclass(frozen=True)
class GeneratorInfo:
    backend: str  # its name in GENERATORS
    model: str  # name or path as given at start-up
    weight_version: int
    max_context_length: int  # prompt + completion tokens the model accepts
    vocab_size: int
    eos_token_ids: tuple[int, ...]
    pad_token_id: int
    # Where the backend computes (RolloutInfo.host_cpu_threads, wire v1.5): N > 0 = torch runs the
    # model in this process on the host CPU with N intra-op threads; 0 = the model runs elsewhere (a
    # GPU, SGLang's servers) and this process only waits on it; None = the backend does not say (a
    # plugin written before v1.5). A learner co-located with the service sizes its threads from it.
    host_cpu_threads: int | None = None


@dataclass(frozen=True)
class TensorSpec:
    """Name-free description of a parameter, enough to check an incoming tensor against it."""

    shape: tuple[int, ...]
    dtype: torch.dtype


class WeightUpdateError(ValueError):
    """New weights do not fit the model or the backend refused them; nothing was applied."""


class BackendError(RuntimeError):
    """The backend could not do its job (e.g. an SGLang server is unreachable); worth retrying later."""


class GenerationError(BackendError):
    """The backend failed to generate (e.g. the SGLang server answered with an error)."""


class WeightsUnusable(BackendError):
    """A failed update left the engines with a mix of old and new tensors; only a complete update helps."""


@runtime_checkable
class Generator(Protocol):
    async def generate(
        self, prompts_token_ids: Sequence[Sequence[int]], n: int, sampling: SamplingParams
    ) -> list[list[GeneratedCompletion]]:
        """`n` completions of every prompt, in prompt order: result[i][j] is completion j of prompt i."""
        ...

    async def load_weights(self, named_tensors: Mapping[str, torch.Tensor], version: int) -> None:
        """Replace (a subset of) the weights and become `version`; all or nothing.

        Never applied while a generate call is running: the call finishes on the old weights.
        Raises WeightUpdateError (nothing applied) when a tensor does not fit. Keeps no reference
        to `named_tensors` after returning (copy what you keep): the service writes the next
        update into their memory.
        """
        ...

    def parameter_specs(self) -> Mapping[str, TensorSpec]:
        """Name -> shape/dtype of every tensor `load_weights` accepts (empty if unknown)."""
        ...

    def info(self) -> GeneratorInfo: ...

    async def close(self) -> None:
        """Release the backend (threads, HTTP clients, child processes)."""
        ...


class DistributedBucketSink(Protocol):
    """An NCCL weight update in progress on a backend (see `DistributedWeightReceiver`)."""

    version: int
    done: bool  # ended: last bucket taken, a bucket failed, or abandoned

    async def receive_bucket(
        self,
        names: Sequence[str],
        dtypes: Sequence[str],
        shapes: Sequence[Sequence[int]],
        last: bool,
    ) -> None:
        """Have every engine receive the next bucket from the group's broadcast and load it.

        Returns once every engine has answered; on the last bucket the version is adopted and
        generation resumes. Raises WeightUpdateError (an engine refused) or BackendError (one is
        unreachable); the update is then over, the version unchanged, generation resumed.
        """
        ...

    async def abandon(self, reason: str) -> None:
        """End the update without adopting the version (restore the weights if possible), resume."""
        ...


@runtime_checkable
class DistributedWeightReceiver(Protocol):
    """A backend whose engines can join the learner's weight-update group (SGLang, not hf).

    Kept apart from `Generator` because only some backends have it: the service checks
    `isinstance(generator, DistributedWeightReceiver)` and answers UNIMPLEMENTED otherwise.
    """

    def weight_sync_ranks(self) -> int:
        """Ranks the engines take in a group (their GPUs); 0 = cannot join one right now."""
        ...

    def weight_sync_group(self) -> str:
        """Name of the group the engines have joined, "" if none."""
        ...

    async def init_weights_update_group(
        self,
        master_address: str,
        master_port: int,
        rank_offset: int,
        world_size: int,
        group_name: str,
        backend: str,
    ) -> int:
        """Join every engine to the group (returns once it has formed); returns the ranks taken."""
        ...

    async def begin_distributed_update(self, version: int, group_name: str) -> DistributedBucketSink:
        """Wait for running generate calls, pause generation and open an update to `version`."""
        ...


def check_tensors_fit(named_tensors: Mapping[str, torch.Tensor], specs: Mapping[str, TensorSpec]) -> None:
    """Raise WeightUpdateError unless every tensor names a known parameter with the same shape and dtype."""
    if not named_tensors:
        raise WeightUpdateError("the update holds no tensors")
    try:
        check_compatible(named_tensors, specs)
    except WeightStreamError as exc:
        raise WeightUpdateError(f"{exc}; send the rollout model's names, shapes and dtypes") from None


@runtime_checkable
class AdapterReceiver(Protocol):
    """A backend that serves LoRA adapters on top of its base model (SGLang, not hf).

    The service checks `isinstance(generator, AdapterReceiver)`; other backends refuse adapter
    streams (INVALID_ARGUMENT: send merged weights). `spec` is a validated
    `lora_adapters.AdapterSpec`.
    """

    def adapter_tensor_specs(self, spec: AdapterSpec) -> Mapping[str, TensorSpec]:
        """peft name -> shape/dtype of every tensor the adapter may hold (empty if unknown)."""
        ...

    async def load_adapter(
        self, named_tensors: Mapping[str, torch.Tensor], spec: AdapterSpec, version: int
    ) -> None:
        """Serve this adapter from now on and become `version`; all or nothing, like load_weights."""
        ...


@runtime_checkable
class DeltaReceiver(Protocol):
    """A backend that can read back the tensors it serves, so deltas apply on top of them (v1.3).

    hf reads its model's own tensors; sglang its optional host copy (the engines' memory is not
    readable cheaply). The service fingerprints `served_tensors()` after every update, and sends
    a delta stream here only when its base is exactly what is served (otherwise
    FAILED_PRECONDITION, and the learner sends every tensor whole).
    """

    def served_tensors(self) -> Mapping[str, torch.Tensor] | None:
        """The tensors in use now, by parameter name (read only); None when not kept."""
        ...

    async def load_delta(
        self, whole: Mapping[str, torch.Tensor], deltas: Mapping[str, DecodedDelta], version: int
    ) -> None:
        """Become `version`: `whole` replace tensors, `deltas` apply on top of the served ones
        (`grpo_common.weights.delta`), the rest stay; all or nothing, never inside a generate call.
        Either may be empty (nothing changed: only the version moves). Keeps no reference to
        `whole` (the service writes the next update into its memory). A delta whose result holds
        NaN or infinities is refused (WeightUpdateError), as a whole tensor is by the decoder."""
        ...


def check_deltas_fit(deltas: Mapping[str, DecodedDelta], specs: Mapping[str, TensorSpec]) -> None:
    """Raise WeightUpdateError unless every delta names a known parameter of its element count."""
    for name, delta in deltas.items():
        spec = specs.get(name)
        if spec is None:
            raise WeightUpdateError(f"delta for unknown tensor {name!r}: the model has no such parameter")
        if delta.indices is None and delta.xor.numel() != math.prod(spec.shape):
            raise WeightUpdateError(
                f"delta for {name!r} covers {delta.xor.numel()} elements, "
                f"the model's has {math.prod(spec.shape)}"
            )


def resolve_deltas(
    deltas: Mapping[str, DecodedDelta], served: Mapping[str, torch.Tensor]
) -> dict[str, ResolvedDelta]:
    """Every delta's new bits, computed from the served tensors before any is written (so two names
    sharing one tensor, tied embeddings, end the same); WeightUpdateError on NaN or infinities."""
    resolved = {}
    for name, delta in deltas.items():
        current = served[name]
        result = resolve(delta, current)
        if current.is_floating_point() and not _all_finite(result.bits.view(current.dtype)):
            raise WeightUpdateError(
                f"the delta for {name!r} makes it hold NaN or infinities (a diverged training step?); "
                "refused, nothing was applied"
            )
        resolved[name] = result
    return resolved


def _all_finite(values: torch.Tensor) -> bool:
    """A finite sum proves every element finite (NaN and inf propagate) in one cheap pass; only a
    non-finite sum, which huge finite values can also give, pays for the exact test (as the decoder)."""
    try:
        total = values.sum().item()
    except (RuntimeError, NotImplementedError):  # float8 on CPU
        values = values.float()
        total = values.sum().item()
    return math.isfinite(total) or bool(torch.isfinite(values.float()).all())
