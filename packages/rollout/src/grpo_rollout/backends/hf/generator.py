"""The `hf` backend: a transformers causal LM sampled with its KV cache, on CPU by default.

It is the reference backend: the sampling loop is written out here (prefill, then one token per
step through `past_key_values`) instead of calling `model.generate`, so the logprobs are exactly
the documented ones (pre-filter, temperature-scaled) and every step is visible.

- All `n × prompts` sequences run as one left-padded batch. Each prompt is prefilled once and its
  KV cache repeated `n` times; rows that finish are dropped from the batch.
- Reproducible: with a seed, the same call gives the same completions (a private torch.Generator).
- Weights are replaced in place (`copy_`, no model rebuild) under the same lock that guards a
  generate call, so a batch never sees two versions; everything is validated before the first copy.
- Partial calls (`SamplingParams.partial`, v1.4) are the exception: an update does not wait for them.
  At the next token boundary the call hands the model over (`_yield_to_update`), the weights swap,
  and the call re-prefills prompt + tokens so far under the new weights (SGLang's "retract": no KV
  computed by old weights survives) before sampling on. Every token is thus sampled, and its
  logprob taken, from exactly one version, which the call records per step (`version_runs`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from grpo_common.token_versions import oldest, runs_from_switches
from grpo_common.weights.delta import DecodedDelta, write
from transformers import AutoModelForCausalLM, PreTrainedModel

from grpo_rollout.backends.contract import (
    FinishReason,
    GeneratedCompletion,
    GeneratorInfo,
    SamplingParams,
    TensorSpec,
    check_deltas_fit,
    check_tensors_fit,
    resolve_deltas,
)
from grpo_rollout.backends.hf.config import HFConfig
from grpo_rollout.sampling import sample_next_tokens
from grpo_rollout.version_gate import VersionGate

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _as_id_tuple(value: int | Sequence[int] | None) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, int):
        return (value,)
    return tuple(int(v) for v in value)


class HFGenerator:
    """Generator backed by an in-memory transformers model."""

    backend = "hf"

    def __init__(self, model: PreTrainedModel, model_name: str, weight_version: int = 0) -> None:
        self._model = model.eval()
        self._model_name = model_name
        self._version = weight_version
        self._lock = threading.Lock()  # guards the model for sync callers
        self._gate = VersionGate()  # orders async callers, updates first
        # Updates waiting for the model: a partial call seeing one at a token boundary lets it go
        # first (releases _lock until the count is back to 0).
        self._updates_waiting = 0
        self._updates_done = threading.Condition()
        self._device = next(model.parameters()).device
        config = model.config
        generation_config = getattr(model, "generation_config", None)
        eos = _as_id_tuple(getattr(generation_config, "eos_token_id", None)) or _as_id_tuple(
            config.eos_token_id
        )
        pad = getattr(config, "pad_token_id", None)
        if pad is None and generation_config is not None:
            pad = generation_config.pad_token_id
        self._eos_token_ids = eos
        self._pad_token_id = int(pad if pad is not None else (eos[0] if eos else 0))
        self._max_context = int(getattr(config, "max_position_embeddings", 0) or 2048)
        self._vocab_size = int(config.get_text_config().vocab_size)
        self._specs = {
            name: TensorSpec(tuple(tensor.shape), tensor.dtype) for name, tensor in model.state_dict().items()
        }

    @classmethod
    def from_pretrained(cls, path: str | Path, settings: HFConfig) -> HFGenerator:
        """Load a Hugging Face checkpoint (a local directory or a cached hub id) per `[hf]`."""
        device, dtype = settings.device, settings.dtype
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r} is not supported; use one of {sorted(DTYPES)}")
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=DTYPES[dtype]).to(device)
        logger.info(
            "loaded %s on %s (%s, %.1fM parameters)",
            path,
            device,
            dtype,
            sum(p.numel() for p in model.parameters()) / 1e6,
        )
        return cls(model, str(path))

    @property
    def model(self) -> PreTrainedModel:
        return self._model

    def info(self) -> GeneratorInfo:
        return GeneratorInfo(
            backend=self.backend,
            model=self._model_name,
            weight_version=self._version,
            max_context_length=self._max_context,
            vocab_size=self._vocab_size,
            eos_token_ids=self._eos_token_ids,
            pad_token_id=self._pad_token_id,
            host_cpu_threads=self.host_cpu_threads(),
        )

    def host_cpu_threads(self) -> int:
        """The torch threads the model computes with on this host's CPU; 0 when it sits on a GPU
        (the CPU then only launches kernels and samples nothing heavy)."""
        return torch.get_num_threads() if self._device.type == "cpu" else 0

    def parameter_specs(self) -> Mapping[str, TensorSpec]:
        return self._specs

    async def generate(
        self, prompts_token_ids: Sequence[Sequence[int]], n: int, sampling: SamplingParams
    ) -> list[list[GeneratedCompletion]]:
        if sampling.partial:  # an update need not wait for it: it yields at a token boundary
            return await asyncio.to_thread(self.generate_sync, prompts_token_ids, n, sampling)
        async with self._gate.shared():
            return await asyncio.to_thread(self.generate_sync, prompts_token_ids, n, sampling)

    async def load_weights(self, named_tensors: Mapping[str, torch.Tensor], version: int) -> None:
        check_tensors_fit(named_tensors, self._specs)  # fail fast, before queueing behind batches
        # The gate makes a waiting update go first once running batches finish (a plain lock
        # would let a steady stream of generate calls starve it).
        async with self._gate.exclusive():
            await asyncio.to_thread(self._as_update, self.load_weights_sync, named_tensors, version)

    def _as_update(self, apply: Callable[..., None], *args: object) -> None:
        """Run `apply` (which takes _lock) as a waiting update: a partial call yields to it."""
        with self._updates_done:
            self._updates_waiting += 1
        try:
            apply(*args)
        finally:
            with self._updates_done:
                self._updates_waiting -= 1
                self._updates_done.notify_all()

    def _yield_to_update(self) -> bool:
        """Called by a partial call holding _lock at a token boundary: when an update waits, release
        the model until no update waits, then take it back. True when the call yielded."""
        if not self._updates_waiting:
            return False
        self._lock.release()
        try:
            with self._updates_done:
                self._updates_done.wait_for(lambda: self._updates_waiting == 0)
        finally:
            self._lock.acquire()
        return True

    def served_tensors(self) -> Mapping[str, torch.Tensor]:
        """The model's own tensors (what a delta applies to and the fingerprint reads)."""
        return self._model.state_dict()

    async def load_delta(
        self, whole: Mapping[str, torch.Tensor], deltas: Mapping[str, DecodedDelta], version: int
    ) -> None:
        """A delta update in place: new bits written into the model's tensors under the gate."""
        if whole:
            check_tensors_fit(whole, self._specs)
        check_deltas_fit(deltas, self._specs)
        async with self._gate.exclusive():
            await asyncio.to_thread(self._as_update, self._load_delta_sync, whole, deltas, version)

    def _load_delta_sync(
        self, whole: Mapping[str, torch.Tensor], deltas: Mapping[str, DecodedDelta], version: int
    ) -> None:
        with self._lock, torch.no_grad():
            state = self._model.state_dict()
            resolved = resolve_deltas(deltas, state)  # reads only: a refusal leaves the model as it was
            for name, tensor in whole.items():
                state[name].copy_(tensor)
            for name, bits in resolved.items():
                write(state[name], bits)
            self._version = version
        logger.info(
            "weights updated to version %d in place (%d tensors whole, %d by delta)",
            version,
            len(whole),
            len(deltas),
        )

    async def close(self) -> None:
        return None

    def load_weights_sync(self, named_tensors: Mapping[str, torch.Tensor], version: int) -> None:
        check_tensors_fit(named_tensors, self._specs)
        with self._lock, torch.no_grad():
            state = self._model.state_dict()
            for name, tensor in named_tensors.items():
                state[name].copy_(tensor)
            self._version = version
        logger.info("weights updated to version %d (%d tensors)", version, len(named_tensors))

    def generate_sync(
        self, prompts_token_ids: Sequence[Sequence[int]], n: int, sampling: SamplingParams
    ) -> list[list[GeneratedCompletion]]:
        """The blocking generate call; waits for a running weight update (or generate) to finish."""
        sampling.validate()
        prompts = [list(p) for p in prompts_token_ids]
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if not prompts or any(not p for p in prompts):
            raise ValueError("every prompt needs at least one token")
        longest = max(len(p) for p in prompts)
        if longest + sampling.max_new_tokens > self._max_context:
            raise ValueError(
                f"max_new_tokens {sampling.max_new_tokens} + prompt length {longest} exceeds the "
                f"model's context of {self._max_context} tokens"
            )
        if sampling.partial:  # a new call lets waiting updates go first, as the gate does
            with self._updates_done:
                self._updates_done.wait_for(lambda: self._updates_waiting == 0)
        switches: list[tuple[int, int]] = []  # (first step, version) of each version the call used
        with self._lock, torch.inference_mode():
            switches.append((0, self._version))
            rows = self._sample(prompts, n, sampling, switches)
        completions = []
        for tokens, logprobs, finish in rows:
            runs = runs_from_switches(switches, len(tokens)) if sampling.partial else ()
            version = oldest(runs) if runs else switches[0][1]
            completions.append(GeneratedCompletion(tokens, logprobs, finish, version, runs))
        return [completions[i * n : (i + 1) * n] for i in range(len(prompts))]

    def _sample(
        self, prompts: list[list[int]], n: int, sampling: SamplingParams, switches: list[tuple[int, int]]
    ) -> list[tuple[list[int], list[float], FinishReason]]:
        """Prefill every prompt once, repeat its cache n times, then decode one token per step.

        Per step there is no Python work per row and no allocation that grows with the step: the
        attention mask and the token/logprob buffers are allocated once for the whole call and
        written in place; the only host sync is the stop check (skipped when nothing can stop).
        A partial call checks for a waiting update before each step after the first; when it yielded,
        it appends (step, new version) to `switches` and re-prefills its rows under the new weights.
        """
        device = self._device
        generator = None
        if sampling.seed is not None:
            generator = torch.Generator(device=device).manual_seed(sampling.seed)
        stop_ids = torch.tensor(sorted({*self._eos_token_ids, *sampling.stop_token_ids}), device=device)
        max_new = sampling.max_new_tokens

        # One left-padded mask for the call: the prompt columns, then one column per new token.
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self._pad_token_id, dtype=torch.long)
        mask = torch.ones((len(prompts), width + max_new), dtype=torch.long)
        for i, prompt in enumerate(prompts):
            input_ids[i, width - len(prompt) :] = torch.tensor(prompt)
            mask[i, : width - len(prompt)] = 0
        input_ids, mask = input_ids.to(device), mask.to(device)
        positions = (mask[:, :width].cumsum(-1) - 1).clamp(min=0)
        out = self._model(
            input_ids=input_ids,
            attention_mask=mask[:, :width],
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
        )
        cache = out.past_key_values
        logits = out.logits[:, -1, :].repeat_interleave(n, dim=0)
        if n > 1:
            cache.batch_repeat_interleave(n)
        mask = mask.repeat_interleave(n, dim=0)
        prompt_columns = input_ids.repeat_interleave(n, dim=0) if sampling.partial else None
        next_position = positions[:, -1:].repeat_interleave(n, dim=0) + 1

        total = len(prompts) * n
        tokens_out = torch.zeros((total, max_new), dtype=torch.long, device=device)
        logprobs_out = torch.zeros((total, max_new), dtype=torch.float32, device=device)
        lengths = torch.full((total,), max_new, dtype=torch.long)
        stopped = torch.zeros(total, dtype=torch.bool)
        active = torch.arange(total, device=device)  # original row of each row still in the batch
        everyone = True  # no row has left: write whole columns instead of scattering

        for step in range(max_new):
            if prompt_columns is not None and step and self._yield_to_update():
                switches.append((step, self._version))
                # Retract: the KV cache and the next logits again, from the new weights.
                sequences = torch.cat([prompt_columns[active], tokens_out[active, :step]], dim=1)
                seen = mask[:, : width + step]
                out = self._model(
                    input_ids=sequences,
                    attention_mask=seen,
                    position_ids=(seen.cumsum(-1) - 1).clamp(min=0),
                    use_cache=True,
                    logits_to_keep=1,
                )
                cache, logits = out.past_key_values, out.logits[:, -1, :]
            tokens, logprobs = sample_next_tokens(
                logits, sampling.temperature, sampling.top_k, sampling.top_p, generator
            )
            if everyone:
                tokens_out[:, step] = tokens
                logprobs_out[:, step] = logprobs
            else:
                tokens_out[active, step] = tokens
                logprobs_out[active, step] = logprobs
            if step + 1 == max_new:
                break
            if stop_ids.numel():
                hit_stop = torch.isin(tokens, stop_ids)
                hit_cpu = hit_stop.cpu()
                if hit_cpu.any():
                    done = active[hit_stop].cpu()
                    lengths[done] = step + 1
                    stopped[done] = True
                    if hit_cpu.all():
                        break
                    keep = (~hit_stop).nonzero().squeeze(-1)
                    cache.batch_select_indices(keep)
                    active, tokens, mask, next_position = (
                        active[keep],
                        tokens[keep],
                        mask[keep],
                        next_position[keep],
                    )
                    everyone = False
            out = self._model(
                input_ids=tokens.unsqueeze(-1),
                attention_mask=mask[:, : width + step + 1],
                position_ids=next_position,
                past_key_values=cache,
                use_cache=True,
            )
            cache = out.past_key_values
            logits = out.logits[:, -1, :]
            next_position = next_position + 1

        token_rows, logprob_rows = tokens_out.cpu().tolist(), logprobs_out.cpu().tolist()
        return [
            (tokens[:length], logprobs[:length], FinishReason.STOP if stop else FinishReason.LENGTH)
            for tokens, logprobs, length, stop in zip(
                token_rows, logprob_rows, lengths.tolist(), stopped.tolist(), strict=True
            )
        ]
