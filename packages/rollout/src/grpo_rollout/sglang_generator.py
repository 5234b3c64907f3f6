"""The `sglang` backend: generation on one or more SGLang servers, weights pushed to every worker.

- Generate: one /generate request per prompt (its n sequences as a batch), all prompts concurrently;
  to the router when there is one, else round-robin over the workers. SGLang batches them itself.
- Weights (a): the received tensors are written as a safetensors checkpoint directory the servers
  can read, then every worker gets pause_generation -> update_weights_from_disk (with
  weight_version) -> continue_generation. If one worker refuses, the others are rolled back to the
  previous weights, so the fleet never serves two versions.
- Weights (b): the NCCL group path for learner GPUs that can reach the engines:
  `init_weights_update_group` once, then per update `begin_distributed_update` (sends
  update_weights_from_distributed to every worker *before* the broadcast), broadcast, `finish()`.
- Updates go to each worker directly, never through the router.
- A writer-preferring gate keeps updates out of running generate calls, so a group is one version.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import torch
from safetensors.torch import save_file

from grpo_rollout.generator import (
    BackendError,
    GeneratedCompletion,
    GenerationError,
    GeneratorInfo,
    SamplingConfig,
    TensorSpec,
    WeightUpdateError,
    check_tensors_fit,
)
from grpo_rollout.model_facts import ModelFacts
from grpo_rollout.sglang_http import PauseMode, SGLangError, SGLangServer
from grpo_rollout.sglang_payloads import (
    SGLangProtocolError,
    group_request,
    parse_output,
    parse_weight_version,
)
from grpo_rollout.version_gate import VersionGate

logger = logging.getLogger(__name__)

CHECKPOINT_SIDE_FILES = ("config.json", "generation_config.json")


def write_checkpoint(
    named_tensors: Mapping[str, torch.Tensor], directory: Path, side_files_from: Path
) -> None:
    """Write tensors as `model.safetensors` (plus config files) into a fresh `directory`, atomically."""
    tmp = directory.with_name(directory.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in named_tensors.items()}
    save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    for name in CHECKPOINT_SIDE_FILES:
        if (side_files_from / name).is_file():
            shutil.copy2(side_files_from / name, tmp / name)
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)


@dataclass
class DistributedUpdate:
    """An NCCL weight update in progress: the requests are sent; broadcast, then `await finish()`."""

    generator: SGLangGenerator
    version: int
    pending: list[asyncio.Task[str]]
    _gate_exit: object = field(repr=False)

    async def finish(self) -> None:
        """Wait for every worker's reply, resume generation and adopt the version (or raise)."""
        results = await asyncio.gather(*self.pending, return_exceptions=True)
        try:
            failures = [r for r in results if isinstance(r, BaseException)]
            if failures:
                raise WeightUpdateError(
                    f"update_weights_from_distributed failed on {len(failures)} worker(s): {failures[0]}"
                )
            self.generator._version = self.version
        finally:
            await self.generator._continue_all()
            await self._gate_exit.__aexit__(None, None, None)  # type: ignore[attr-defined]


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
        weight_version: int = 0,
        pause_mode: PauseMode = "abort",
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
        self._round_robin = itertools.cycle(self._workers)
        self._current_weights = model  # what a rollback restores
        self._rank_offsets: list[int] | None = None

    @classmethod
    async def connect(
        cls,
        model: str,
        facts: ModelFacts,
        worker_urls: Sequence[str],
        router_url: str | None = None,
        weight_dir: Path | None = None,
        request_timeout_s: float = 600.0,
        health_timeout_s: float = 60.0,
        pause_mode: PauseMode = "abort",
    ) -> SGLangGenerator:
        """Wait for every worker's /health, read their weight versions (they must agree)."""
        client = httpx.AsyncClient(limits=httpx.Limits(max_connections=1024, max_keepalive_connections=256))
        workers = [SGLangServer(url, client, request_timeout_s) for url in worker_urls]
        router = SGLangServer(router_url, client, request_timeout_s) if router_url else None
        try:
            await asyncio.gather(*(w.wait_healthy(health_timeout_s) for w in workers))
            infos = await asyncio.gather(*(w.model_info() for w in workers))
            versions = {parse_weight_version(info.get("weight_version")) for info in infos}
            if len(versions) != 1:
                raise SGLangError(
                    f"workers report different weight versions {sorted(versions)}; restart them from "
                    "the same checkpoint"
                )
        except BaseException:
            await client.aclose()
            raise
        directory = weight_dir or Path(model).parent / ".grpo-rollout-weights"
        generator = cls(model, facts, workers, router, directory, client, versions.pop(), pause_mode)
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
        )

    def parameter_specs(self) -> Mapping[str, TensorSpec]:
        return self._facts.parameter_specs

    async def generate(
        self, prompts_token_ids: Sequence[Sequence[int]], n: int, sampling: SamplingConfig
    ) -> list[list[GeneratedCompletion]]:
        sampling.validate()
        async with self._gate.shared():
            return list(
                await asyncio.gather(
                    *(self._generate_group(p, i, n, sampling) for i, p in enumerate(prompts_token_ids))
                )
            )

    async def _generate_group(
        self, prompt: Sequence[int], index: int, n: int, sampling: SamplingConfig
    ) -> list[GeneratedCompletion]:
        server = self._router or next(self._round_robin)
        try:
            outputs = await server.generate(group_request(prompt, index, n, sampling))
            if len(outputs) != n:
                raise SGLangProtocolError(f"asked for {n} sequences, got {len(outputs)}")
            return [parse_output(output) for output in outputs]
        except (SGLangError, SGLangProtocolError) as exc:
            raise GenerationError(f"sglang generate via {server.url}: {exc}") from exc

    async def load_weights(self, named_tensors: Mapping[str, torch.Tensor], version: int) -> None:
        if self._facts.parameter_specs:
            check_tensors_fit(named_tensors, self._facts.parameter_specs)
        directory = self._weight_dir / f"v{version}"
        await asyncio.to_thread(write_checkpoint, named_tensors, directory, Path(self._model))
        async with self._gate.exclusive():
            await self._update_all_from_disk(str(directory), version)
        self._prune_old_checkpoints(keep=directory)

    async def close(self) -> None:
        await self._client.aclose()

    # --- weights from disk --------------------------------------------------------------------
    async def _pause_all(self) -> list[SGLangServer]:
        paused: list[SGLangServer] = []
        try:
            for worker in self._workers:
                await worker.pause_generation(self._pause_mode)
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
                await self._roll_back(updated)
                raise WeightUpdateError(
                    f"SGLang refused the weights on {len(failed)} of {len(self._workers)} worker(s): "
                    f"{failed[0][1]}; all workers stay on version {self._version}"
                )
            self._version = version
            self._current_weights = path
        finally:
            await self._continue_all()
        logger.info("sglang workers updated to version %d from %s", version, path)

    async def _roll_back(self, workers: Sequence[SGLangServer]) -> None:
        for worker in workers:
            try:
                await worker.update_weights_from_disk(self._current_weights, str(self._version))
            except SGLangError:
                logger.exception("rollback of %s to %s failed", worker.url, self._current_weights)

    def _prune_old_checkpoints(self, keep: Path) -> None:
        for old in self._weight_dir.glob("v*"):
            if old != keep and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)

    # --- weights over an NCCL group -----------------------------------------------------------
    async def init_weights_update_group(
        self,
        master_address: str,
        master_port: int,
        gpus_per_worker: Sequence[int],
        group_name: str = "weight_update_group",
        backend: str = "nccl",
    ) -> int:
        """Join every worker to the trainer's group; returns the world size (trainer = rank 0).

        Worker i gets rank_offset 1 + the GPUs of the workers before it. Like the broadcast, the
        trainer's own rendezvous must run concurrently (it blocks until every rank joins).
        """
        if len(gpus_per_worker) != len(self._workers):
            raise ValueError(
                f"gpus_per_worker has {len(gpus_per_worker)} entries for {len(self._workers)} workers"
            )
        offsets = [1 + sum(gpus_per_worker[:i]) for i in range(len(self._workers))]
        world_size = 1 + sum(gpus_per_worker)
        await asyncio.gather(
            *(
                w.init_weights_update_group(
                    master_address, master_port, offset, world_size, group_name, backend
                )
                for w, offset in zip(self._workers, offsets, strict=True)
            )
        )
        self._rank_offsets = offsets
        return world_size

    async def begin_distributed_update(
        self,
        names: Sequence[str],
        dtypes: Sequence[str],
        shapes: Sequence[Sequence[int]],
        version: int,
        group_name: str = "weight_update_group",
    ) -> DistributedUpdate:
        """Pause the workers and send update_weights_from_distributed to each without waiting.

        The caller then broadcasts every tensor from rank 0 in `names` order (off the event loop,
        e.g. in a thread) and awaits `finish()`. Waiting for the replies before broadcasting deadlocks.
        """
        if self._rank_offsets is None:
            raise WeightUpdateError("call init_weights_update_group before a distributed update")
        if not len(names) == len(dtypes) == len(shapes):
            raise ValueError("names, dtypes and shapes must have the same length")
        gate = self._gate.exclusive()
        await gate.__aenter__()
        try:
            await self._pause_all()
        except BaseException:
            await gate.__aexit__(None, None, None)
            raise
        pending = [
            asyncio.create_task(
                w.update_weights_from_distributed(names, dtypes, shapes, str(version), group_name)
            )
            for w in self._workers
        ]
        await asyncio.sleep(0)  # let the requests start before the caller blocks in the broadcast
        return DistributedUpdate(self, version, pending, gate)
