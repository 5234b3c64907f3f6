"""LoRA adapters on SGLang: a verified adapter stream -> a peft directory -> /load_lora_adapter.

An adapter push (version N) is written as peft's format (`adapter_config.json` +
`adapter_model.safetensors`) under the weight dir as `grpo-lora-vN`, then, with generation paused
like any weight update, every worker gets /load_lora_adapter {lora_name, lora_path}. Only when all
of them took it does N become the served version: from then on every /generate carries
`lora_path: grpo-lora-vN` (one per sequence of the batch) and the previous adapter is unloaded.
A worker that refuses leaves the previous adapter and version in use (the workers that took the
new one unload it again).

SGLang's `meta_info.weight_version` is the base weights' version (a LoRA load does not change
it), so a completion served with an adapter carries the adapter's version: the generator's gate
keeps updates out of running generate calls, so the adapter named in the request produced it.
A full weight update afterwards ends adapter serving (`forget`): the merged weights are the policy.

The servers need `--enable-lora --max-lora-rank R --lora-target-modules ...` (README).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from grpo_rollout.atomic_dirs import replace_directory
from grpo_rollout.backends.contract import BackendError, GeneratedCompletion, WeightUpdateError
from grpo_rollout.backends.sglang.fleet import failure_kind, failures, who
from grpo_rollout.backends.sglang.http import SGLangError, SGLangServer
from grpo_rollout.lora_adapters import AdapterSpec

logger = logging.getLogger(__name__)

ADAPTER_PREFIX = "grpo-lora-v"


def peft_config(spec: AdapterSpec, base_model: str) -> dict[str, Any]:
    """peft's adapter_config.json for a plain LoRA adapter of a causal LM."""
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": spec.rank,
        "lora_alpha": spec.alpha,
        "target_modules": list(spec.target_modules),
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "inference_mode": True,
    }


def write_peft_adapter(
    named_tensors: Mapping[str, torch.Tensor], spec: AdapterSpec, directory: Path, base_model: str
) -> None:
    """Write the adapter in peft's format into a fresh `directory`, atomically."""

    def fill(tmp: Path) -> None:
        tensors = {name: t.detach().to("cpu").contiguous() for name, t in named_tensors.items()}
        save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        (tmp / "adapter_config.json").write_text(json.dumps(peft_config(spec, base_model), indent=2))

    replace_directory(directory, fill)


@dataclass(frozen=True)
class LoadedAdapter:
    name: str
    path: Path
    version: int


class SGLangAdapters:
    """The adapter the workers serve (if any) and the switch to a new one; one per SGLangGenerator."""

    def __init__(self, weight_dir: Path, base_model: str) -> None:
        self._weight_dir = weight_dir
        self._base_model = base_model
        self.active: LoadedAdapter | None = None
        self._stale: list[LoadedAdapter] = []  # loaded on the workers but no longer served
        self._loads = 0

    async def write(
        self, named_tensors: Mapping[str, torch.Tensor], spec: AdapterSpec, version: int
    ) -> LoadedAdapter:
        """Put the adapter on disk under a name no worker has loaded (a repeated version gets a suffix)."""
        if not named_tensors:
            raise WeightUpdateError("the adapter stream holds no tensors")
        self._loads += 1
        taken = {a.name for a in [*self._stale, *([self.active] if self.active else [])]}
        name = f"{ADAPTER_PREFIX}{version}"
        if name in taken:
            name = f"{name}.{self._loads}"
        directory = self._weight_dir / name
        try:
            await asyncio.to_thread(write_peft_adapter, named_tensors, spec, directory, self._base_model)
        except OSError as exc:
            raise BackendError(f"could not write the adapter to {directory}: {exc}") from exc
        return LoadedAdapter(name, directory, version)

    def discard(self, adapter: LoadedAdapter) -> None:
        """Remove the directory of an adapter that never became active (its load failed)."""
        if adapter != self.active:
            shutil.rmtree(adapter.path, ignore_errors=True)

    async def switch(self, workers: Sequence[SGLangServer], new: LoadedAdapter) -> None:
        """Load `new` on every worker (generation paused by the caller), then retire the old ones.

        Raises WeightUpdateError (a worker refused) or BackendError (one is unreachable); then
        nothing changed: the workers that took `new` unload it and the old adapter stays active.
        A name this object never loaded may still be loaded by an earlier run of the service on
        the same servers (SGLang refuses to load a name twice): it is unloaded first.
        """
        await _unload(workers, new.name, quiet=True)
        results = await asyncio.gather(
            *(w.load_lora_adapter(new.name, str(new.path)) for w in workers), return_exceptions=True
        )
        failed = failures(workers, results)
        if failed:
            loaded = [w for w, r in zip(workers, results, strict=True) if not isinstance(r, BaseException)]
            await _unload(loaded, new.name)
            raise failure_kind(failed)(
                f"{who(failed)} could not load LoRA adapter {new.name}: {failed[0][1]}"
            )
        retired = [*self._stale, *([self.active] if self.active else [])]
        self.active, self._stale = new, []
        for old in retired:
            await _unload(workers, old.name)
            shutil.rmtree(old.path, ignore_errors=True)
        logger.info(
            "sglang workers serve LoRA adapter %s (version %d) from %s", new.name, new.version, new.path
        )

    def forget(self) -> None:
        """Full weights were loaded: stop serving the adapter (it is unloaded at the next switch)."""
        if self.active is not None:
            self._stale.append(self.active)
            self.active = None


def with_adapter(payload: dict[str, Any], n: int, adapter: LoadedAdapter | None) -> dict[str, Any]:
    """A /generate payload of `n` sequences, each served by `adapter` (unchanged if None)."""
    return payload if adapter is None else payload | {"lora_path": [adapter.name] * n}


def attributed(
    completions: list[GeneratedCompletion], adapter: LoadedAdapter | None
) -> list[GeneratedCompletion]:
    """Completions of a request sent with `adapter` carry its version (see the module docstring), every
    token of them too: SGLang's per-token `weight_versions` are the base weights' versions, and a call
    with an adapter holds the gate, so the adapter produced every token."""
    if adapter is None:
        return completions
    return [
        dataclasses.replace(
            c,
            weight_version=adapter.version,
            version_runs=((adapter.version, len(c.token_ids)),) if c.version_runs else (),
        )
        for c in completions
    ]


async def _unload(workers: Sequence[SGLangServer], name: str, quiet: bool = False) -> None:
    """Unload `name` everywhere; a failure only costs the worker memory, so it is logged
    (`quiet`: at debug level, for a name that is normally not loaded)."""
    results = await asyncio.gather(*(w.unload_lora_adapter(name) for w in workers), return_exceptions=True)
    for worker, error in failures(workers, results):
        if isinstance(error, SGLangError):
            logger.log(
                logging.DEBUG if quiet else logging.WARNING,
                "unloading LoRA adapter %s on %s failed: %s",
                name,
                worker.url,
                error,
            )
        else:
            raise error
