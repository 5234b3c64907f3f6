"""The `sglang` backend: generation on one or more SGLang servers, weights pushed to every worker.

- Generate: one /generate request per prompt (its n sequences as a batch), all prompts concurrently;
  to the router when there is one, else round-robin over the workers. SGLang batches them itself.
- Weights (a): the received tensors are written as a safetensors checkpoint directory the servers
  can read, then every worker gets pause_generation -> update_weights_from_disk (with
  weight_version) -> continue_generation. If one worker refuses, the others are rolled back to the
  previous weights, so the fleet never serves two versions.
- Weights (b): the NCCL group path for learner GPUs that can reach the engines:
  `init_weights_update_group` once (weight_group.py), then per update
  `begin_distributed_update` (waits for running generate calls, pauses the workers) and, per
  bucket, `receive_bucket` (distributed.py: update_weights_from_distributed to every
  worker at once; they answer after the learner's broadcast; the version comes with the last
  bucket only).
- Weights (c): LoRA adapter pushes, loaded with /load_lora_adapter and named in every later
  /generate (lora.py).
- Updates go to each worker directly, never through the router.
- A writer-preferring gate keeps updates out of running generate calls, so a group is one version.
- Partial calls (`SamplingParams.partial`, v1.4) stay out of the gate: an update pauses the workers
  with them in flight (mode "retract" where `pause_mode` is "abort", which would end them: SGLang
  keeps retracted requests and recomputes their KV under the new weights), and SGLang reports the
  version of every output token (`meta_info.weight_versions`, payloads.py). While an adapter is
  served, partial calls take the gate like any other (an adapter swap would unload the one they name).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
import torch
from grpo_common.weights.delta import DecodedDelta, write
from safetensors.torch import save_file

from grpo_rollout.atomic_dirs import replace_directory
from grpo_rollout.backends.contract import (
    BackendError,
    GeneratedCompletion,
    GenerationError,
    GeneratorInfo,
    SamplingParams,
    TensorSpec,
    WeightsUnusable,
    WeightUpdateError,
    check_deltas_fit,
    check_tensors_fit,
    resolve_deltas,
)
from grpo_rollout.backends.sglang.config import SGLangConfig
from grpo_rollout.backends.sglang.distributed import DistributedUpdate
from grpo_rollout.backends.sglang.host_copy import HostCopy
from grpo_rollout.backends.sglang.http import PauseMode, SGLangError, SGLangServer
from grpo_rollout.backends.sglang.lora import SGLangAdapters, attributed, with_adapter
from grpo_rollout.backends.sglang.model_facts import ModelFacts
from grpo_rollout.backends.sglang.payloads import (
    SGLangProtocolError,
    group_request,
    parse_output,
    parse_weight_version,
)
from grpo_rollout.backends.sglang.weight_group import WeightGroupMembership, sync_ranks
from grpo_rollout.backends.sglang.weight_group import sync_ranks_of as sync_ranks_of  # re-exported
from grpo_rollout.lora_adapters import AdapterSpec, adapter_tensor_specs
from grpo_rollout.version_gate import VersionGate

logger = logging.getLogger(__name__)

# How an update pauses workers with partial requests in flight: SGLang keeps retracted requests and
# recomputes their KV cache under the new weights, so no token is sampled from a mix of versions.
PARTIAL_PAUSE_MODE: PauseMode = "retract"

CHECKPOINT_SIDE_FILES = ("config.json", "generation_config.json")


def write_checkpoint(
    named_tensors: Mapping[str, torch.Tensor], directory: Path, side_files_from: Path
) -> None:
    """Write tensors as `model.safetensors` (plus config files) into a fresh `directory`, atomically."""

    def fill(tmp: Path) -> None:
        tensors = {name: t.detach().to("cpu").contiguous() for name, t in named_tensors.items()}
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        for name in CHECKPOINT_SIDE_FILES:
            if (side_files_from / name).is_file():
                shutil.copy2(side_files_from / name, tmp / name)

    replace_directory(directory, fill)


class SGLangGenerator:
    """Generator over SGLang HTTP servers; build it with `connect()`."""

    backend = "sglang"

    def __init__(
        self,
        model: str,
        facts: ModelFacts,
        workers: Sequence[SGLangServer],
        router: SGLangServer | None,
        weight_dir: Path,
        client: httpx.AsyncClient,
        weight_version: int,
        pause_mode: PauseMode,
        host_copy: bool,
    ) -> None:
        if not workers:
            raise ValueError("the sglang backend needs at least one worker URL (--sglang-url)")
        self._model = model
        self._facts = facts
        self._workers = list(workers)
        self._router = router
        self._weight_dir = weight_dir
        self._client = client
        self._version = weight_version
        self._pause_mode = pause_mode
        self._gate = VersionGate()
        self._partial_calls = 0  # partial generate calls in flight (outside the gate)
        self._round_robin = itertools.cycle(self._workers)
        self._current_weights: str | None = model  # on disk, what a rollback restores (None: nowhere)
        self._unusable: str | None = None  # why generation is refused after a failed partial update
        # The NCCL weight-update group the workers joined (weight_group.py); ranks from connect().
        self._group = WeightGroupMembership(self._workers, [0] * len(self._workers))
        self._adapters = SGLangAdapters(weight_dir, model)  # adapter pushes (lora.py)
        self._host = HostCopy() if host_copy else None  # what deltas apply to (host_copy.py)

    @classmethod
    async def connect(
        cls,
        model: str,
        facts: ModelFacts,
        worker_urls: Sequence[str],
        settings: SGLangConfig,
    ) -> SGLangGenerator:
        """Wait for every worker's /health, read their weight versions (they must agree).

        `worker_urls`: `settings.urls`, or the server the service launched; the rest of `[sglang]`
        (router, weight directory, deadlines, pause mode) is read from `settings` itself.
        """
        router_url, weight_dir = settings.router_url, settings.weight_dir
        request_timeout_s = settings.request_timeout_s
        client = httpx.AsyncClient(limits=httpx.Limits(max_connections=1024, max_keepalive_connections=256))
        workers = [SGLangServer(url, client, request_timeout_s) for url in worker_urls]
        router = SGLangServer(router_url, client, request_timeout_s) if router_url else None
        try:
            await asyncio.gather(*(w.wait_healthy(settings.health_timeout_s) for w in workers))
            infos = await asyncio.gather(*(w.model_info() for w in workers))
            versions = {parse_weight_version(info.get("weight_version")) for info in infos}
            if len(versions) != 1:
                raise SGLangError(
                    f"workers report different weight versions {sorted(versions)}; restart them from "
                    "the same checkpoint"
                )
            ranks = await asyncio.gather(*(sync_ranks(w) for w in workers))
        except BaseException:
            await client.aclose()
            raise
        directory = weight_dir or Path(model).parent / ".grpo-rollout-weights"
        version = versions.pop()
        generator = cls(
            model, facts, workers, router, directory, client, version, settings.pause_mode, settings.host_copy
        )
        generator._group.ranks_per_worker = list(ranks)
        if version != 0:  # the workers serve pushed weights, not the checkpoint: nothing to restore
            generator._current_weights = None
        logger.info(
            "sglang backend: %d worker(s) %s, router %s, weight version %d",
            len(workers),
            [w.url for w in workers],
            router_url,
            generator._version,
        )
        return generator

    # --- Generator protocol -------------------------------------------------------------------
    def info(self) -> GeneratorInfo:
        return GeneratorInfo(
            backend=self.backend,
            model=self._model,
            weight_version=self._version,
            max_context_length=self._facts.max_context_length,
            vocab_size=self._facts.vocab_size,
            eos_token_ids=self._facts.eos_token_ids,
            pad_token_id=self._facts.pad_token_id,
            host_cpu_threads=0,  # SGLang's servers compute; this process waits on HTTP
        )

    def parameter_specs(self) -> Mapping[str, TensorSpec]:
        return self._facts.parameter_specs

    async def generate(
        self, prompts_token_ids: Sequence[Sequence[int]], n: int, sampling: SamplingParams
    ) -> list[list[GeneratedCompletion]]:
        sampling.validate()
        if sampling.partial and self._adapters.active is None:
            self._partial_calls += 1  # an update pauses these in flight instead of waiting (module doc)
            try:
                return await self._generate_all(prompts_token_ids, n, sampling)
            finally:
                self._partial_calls -= 1
        async with self._gate.shared():
            return await self._generate_all(prompts_token_ids, n, sampling)

    async def _generate_all(
        self, prompts_token_ids: Sequence[Sequence[int]], n: int, sampling: SamplingParams
    ) -> list[list[GeneratedCompletion]]:
        if self._unusable is not None:
            raise WeightsUnusable(self._unusable)
        return list(
            await asyncio.gather(
                *(self._generate_group(p, i, n, sampling) for i, p in enumerate(prompts_token_ids))
            )
        )

    async def _generate_group(
        self, prompt: Sequence[int], index: int, n: int, sampling: SamplingParams
    ) -> list[GeneratedCompletion]:
        server = self._router or next(self._round_robin)
        adapter = self._adapters.active  # the gate keeps it in place until this call returns
        payload = with_adapter(group_request(prompt, index, n, sampling), n, adapter)
        try:
            outputs = await server.generate(payload)
            if len(outputs) != n:
                raise SGLangProtocolError(f"asked for {n} sequences, got {len(outputs)}")
            return attributed([parse_output(output) for output in outputs], adapter)
        except (SGLangError, SGLangProtocolError) as exc:
            raise GenerationError(f"sglang generate via {server.url}: {exc}") from exc

    async def load_weights(self, named_tensors: Mapping[str, torch.Tensor], version: int) -> None:
        before = self._version
        await self._load_full(named_tensors, version)
        if self._host is not None:
            await asyncio.to_thread(self._host.store, before, version, named_tensors)

    async def _load_full(self, named_tensors: Mapping[str, torch.Tensor], version: int) -> None:
        if self._facts.parameter_specs:
            check_tensors_fit(named_tensors, self._facts.parameter_specs)
        directory = self._weight_dir / f"v{version}"
        await asyncio.to_thread(write_checkpoint, named_tensors, directory, Path(self._model))
        async with self._gate.exclusive():
            await self._update_all_from_disk(str(directory), version)
        self._prune_old_checkpoints(keep=directory)

    # --- deltas (host_copy.py) ----------------------------------------------------------------
    def served_tensors(self) -> Mapping[str, torch.Tensor] | None:
        """The host copy of what the engines serve; None without one (or while it is stale)."""
        return self._host.tensors(self._version) if self._host is not None else None

    async def load_delta(
        self, whole: Mapping[str, torch.Tensor], deltas: Mapping[str, DecodedDelta], version: int
    ) -> None:
        """Apply the delta to the host copy and hand the engines full tensors (the local hop)."""
        host = self.served_tensors()
        if host is None:
            raise WeightUpdateError("this service keeps no host copy of its weights to apply a delta to")
        if self._facts.parameter_specs:
            check_deltas_fit(deltas, self._facts.parameter_specs)
        missing = sorted(set(deltas) - set(host))
        if missing:
            raise WeightUpdateError(f"the host copy lacks {missing[:3]}: push every tensor whole")

        def apply() -> dict[str, torch.Tensor]:
            resolved = resolve_deltas(deltas, host)
            fresh = {}
            for name, bits in resolved.items():
                fresh[name] = host[name].clone()
                write(fresh[name], bits)
            return fresh

        fresh = await asyncio.to_thread(apply)
        full = {**whole, **fresh}
        if not full:  # nothing changed: one unchanged tensor carries the version to every engine
            name = next(iter(host))
            full = {name: host[name]}
        before = self._version
        await self._load_full(full, version)
        await asyncio.to_thread(self._host.store, before, version, whole, fresh)  # type: ignore[union-attr]

    def adapter_tensor_specs(self, spec: AdapterSpec) -> Mapping[str, TensorSpec]:
        return adapter_tensor_specs(spec, self._facts.parameter_specs)

    async def load_adapter(
        self, named_tensors: Mapping[str, torch.Tensor], spec: AdapterSpec, version: int
    ) -> None:
        """Write the adapter, then pause -> /load_lora_adapter everywhere -> continue (lora.py)."""
        adapter = await self._adapters.write(named_tensors, spec, version)
        try:
            async with self._gate.exclusive():
                await self._pause_all()
                try:
                    await self._adapters.switch(self._workers, adapter)
                    self._version = version
                finally:
                    await self._continue_all()
        finally:
            self._adapters.discard(adapter)  # unless it became the active one

    async def close(self) -> None:
        await self._client.aclose()

    # --- weights from disk --------------------------------------------------------------------
    async def _pause_all(self) -> list[SGLangServer]:
        paused: list[SGLangServer] = []
        mode = self._pause_mode
        if self._partial_calls and mode == "abort":  # keep the partial requests in flight
            mode = PARTIAL_PAUSE_MODE
        try:
            for worker in self._workers:
                await worker.pause_generation(mode)
                paused.append(worker)
        except SGLangError as exc:
            await self._continue_all(paused)
            raise BackendError(f"could not pause generation for a weight update: {exc}") from exc
        return paused

    async def _continue_all(self, workers: Sequence[SGLangServer] | None = None) -> None:
        for worker in workers if workers is not None else self._workers:
            try:
                await worker.continue_generation()
            except SGLangError:
                logger.exception("continue_generation failed on %s; the worker stays paused", worker.url)

    async def _update_all_from_disk(self, path: str, version: int) -> None:
        await self._pause_all()
        try:
            results = await asyncio.gather(
                *(w.update_weights_from_disk(path, str(version)) for w in self._workers),
                return_exceptions=True,
            )
            failed = [(w, r) for w, r in zip(self._workers, results, strict=True) if isinstance(r, Exception)]
            if failed:
                updated = [
                    w for w, r in zip(self._workers, results, strict=True) if not isinstance(r, Exception)
                ]
                if updated and not await self._roll_back(updated):
                    self._unusable = (
                        f"workers {[w.url for w in updated]} took version {version} from disk, the others "
                        f"refused it, and version {self._version} could not be restored; push a complete "
                        "update to resume"
                    )
                raise WeightUpdateError(
                    f"SGLang refused the weights on {len(failed)} of {len(self._workers)} worker(s): "
                    f"{failed[0][1]}; all workers stay on version {self._version}"
                )
            self._version = version
            self._current_weights = path
            self._unusable = None
            self._adapters.forget()  # the merged weights are the policy now
        finally:
            await self._continue_all()
        logger.info("sglang workers updated to version %d from %s", version, path)

    async def _roll_back(self, workers: Sequence[SGLangServer]) -> bool:
        """Reload the current version's checkpoint on `workers`; True if every one succeeded."""
        if self._current_weights is None:
            return False
        ok = True
        for worker in workers:
            try:
                await worker.update_weights_from_disk(self._current_weights, str(self._version))
            except SGLangError:
                ok = False
                logger.exception("rollback of %s to %s failed", worker.url, self._current_weights)
        return ok

    def _prune_old_checkpoints(self, keep: Path) -> None:
        for old in self._weight_dir.glob("v*"):
            if old != keep and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)

    # --- weights over an NCCL group -----------------------------------------------------------
    def weight_sync_ranks(self) -> int:
        """GPUs of all workers, or 0 if any worker cannot join a group (DP, PP, unknown)."""
        return self._group.ranks()

    def weight_sync_group(self) -> str:
        return self._group.name

    async def init_weights_update_group(
        self,
        master_address: str,
        master_port: int,
        rank_offset: int,
        world_size: int,
        group_name: str = "weight_update_group",
        backend: str = "nccl",
    ) -> int:
        """Join every worker to the trainer's group; returns the ranks taken (trainer = rank 0).

        Worker i joins at rank_offset + the GPUs of the workers before it. The call returns once the
        group has formed, so the trainer's own rendezvous must run concurrently. A group of the
        same name, or the group joined before, is destroyed first (SGLang refuses to create a
        second group of one name, and a learner that reconnects may use a new name).
        """
        return await self._group.join(
            master_address, master_port, rank_offset, world_size, group_name, backend
        )

    async def begin_distributed_update(
        self, version: int, group_name: str = "weight_update_group"
    ) -> DistributedUpdate:
        """Wait for running generate calls, pause every worker and open an update to `version`.

        Then, per bucket, start `receive_bucket(...)` (it sends update_weights_from_distributed to
        every worker at once), broadcast the bucket's tensors from rank 0 in `names` order, and
        await it. Awaiting the replies before broadcasting deadlocks.
        """
        if group_name != self._group.name or not group_name:
            raise WeightUpdateError(
                f"the workers have not joined weight-update group {group_name!r} "
                f"(joined: {self._group.name or 'none'}); call init_weights_update_group first"
            )
        gate = self._gate.exclusive()
        await gate.__aenter__()
        try:
            await self._pause_all()
        except BaseException:
            await gate.__aexit__(None, None, None)
            raise
        return DistributedUpdate(self, version, group_name, gate)
