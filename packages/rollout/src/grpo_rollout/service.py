"""RolloutService: prompts in, whole scored groups out; new weights in, applied between groups.

Generate pipeline for one request: validate -> split the prompts into batches -> per batch
generate G completions per prompt (a bounded number of batches at once service-wide) -> one
batched Score call -> stream each group as soon as its batch is scored. A bounded queue and a
per-request cap on batches ahead of the reader give backpressure: a slow reader stops generation
for its request instead of piling results up in memory.

A group is sent whole or not at all: an error in a batch (reward service down, backend failure)
ends the call with a status naming the cause, and no group of that batch is sent; groups already
streamed stay valid (the learner re-sends the missing prompt ids).

Weight updates are decoded and verified while generation goes on; only the final swap waits for
running batches (the generator's gate), so no group mixes two versions. A partial request
(v1.4) is the exception: its single-turn calls pause at a token boundary for the swap and continue
under the new weights, each token's version recorded (group_assembly.py sends token_versions).
A delta stream (v1.3) applies only on top of exactly the base it names (served_weights.py), and
every reply carries the fingerprint of what is served afterwards.

Prompts with an environment (request or row) run as multi-turn episodes instead of one generate call
(environments/episode_runner.py); a weight update, pushed or distributed, waits for running episode
batches (`_episode_gate`).

Weights over a collective group (InitWeightSync, UpdateWeightsDistributed): distributed_updates.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence

import grpc
from grpo.v1 import rollout_pb2, rollout_pb2_grpc
from grpo_common.weights.codec import DecodedWeights, WeightStreamDecoder, WeightStreamError
from grpo_common.weights.receive_buffers import ReceiveBuffers

from grpo_rollout.backends.contract import (
    AdapterReceiver,
    BackendError,
    DeltaReceiver,
    GeneratedCompletion,
    Generator,
    SamplingParams,
    TensorSpec,
    WeightsUnusable,
    WeightUpdateError,
)
from grpo_rollout.busy_clock import BusyClock
from grpo_rollout.config import ServiceLimits
from grpo_rollout.distributed_updates import DistributedUpdates
from grpo_rollout.environments.episode import EpisodeCompletion
from grpo_rollout.environments.episode_runner import run_episodes
from grpo_rollout.group_assembly import MixedVersionGroup, assemble_group, group_version, score_items
from grpo_rollout.lora_adapters import validate_adapter_spec
from grpo_rollout.prompt_encoding import PromptEncoder
from grpo_rollout.request_validation import GeneratePlan, PreparedPrompt, RequestError, validate_request
from grpo_rollout.reward_client import RewardClient, RewardRefused, RewardUnavailable
from grpo_rollout.served_weights import ServedWeights
from grpo_rollout.version_gate import VersionGate

logger = logging.getLogger(__name__)

SEED_STRIDE = 1_000_003  # batch b of a seeded request samples with seed + b * SEED_STRIDE


class RolloutServicer(rollout_pb2_grpc.RolloutServiceServicer):
    def __init__(
        self,
        generator: Generator,
        encoder: PromptEncoder,
        reward: RewardClient,
        limits: ServiceLimits,
    ) -> None:
        self._generator = generator
        self._encoder = encoder
        self._reward = reward
        self._limits = limits
        self._generation_slots = asyncio.Semaphore(self._limits.max_concurrent_batches)
        self._update_lock = asyncio.Lock()
        self._episode_gate = VersionGate()  # episode batches share it, a weight update takes it alone
        self._in_flight_prompts = 0
        self._in_flight_requests = 0
        self._distributed = DistributedUpdates(generator, self._update_lock, self._episode_gate, self._limits)
        self._busy = BusyClock()  # GetInfo's uptime_seconds / busy_seconds
        # An update's tensors, once copied into the model, receive the next update: that keeps
        # one update's worth of memory between updates (the peak of an update anyway) and spares
        # faulting in fresh pages every step, the largest cost of receiving.
        self._receive_buffers = ReceiveBuffers()
        self._served = ServedWeights()  # the fingerprint of what is served; whether a delta applies
        # when the served weights were last hashed (limits.fingerprint_recheck_s)
        self._rechecked_at = time.monotonic()
        self._recheck: asyncio.Task[None] | None = None

    # --- Generate -----------------------------------------------------------------------------
    async def Generate(
        self, request: rollout_pb2.RolloutRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[rollout_pb2.RolloutGroup]:
        limits = self._limits
        try:
            plan = validate_request(
                request,
                self._encoder,
                self._generator.info(),
                limits.max_group_size,
                limits.max_prompts_per_request,
            )
        except RequestError as exc:
            await context.abort(exc.code, exc.message)
        count = len(plan.prompts)
        if self._in_flight_prompts + count > limits.max_in_flight_prompts:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{self._in_flight_prompts} prompts in flight + {count} requested exceeds this service's "
                f"limit of {limits.max_in_flight_prompts}; retry later or spread prompts over more services",
            )
        self._in_flight_prompts += count
        self._in_flight_requests += 1
        unsent = count
        queue: asyncio.Queue[rollout_pb2.RolloutGroup | RequestError | None] = asyncio.Queue(
            limits.stream_buffer_groups
        )
        runner = asyncio.create_task(self._run_batches(plan, queue))
        started = time.monotonic()
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, RequestError):
                    await context.abort(item.code, item.message)
                yield item
                unsent -= 1
                self._in_flight_prompts -= 1
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
            self._in_flight_prompts -= unsent
            self._in_flight_requests -= 1
            # one line per call, like an access log: who got what from this service
            logger.info(
                "Generate: %d of %d groups streamed (group size %d) in %.2f s",
                count - unsent,
                count,
                request.group_size,
                time.monotonic() - started,
            )

    async def _run_batches(self, plan: GeneratePlan, queue: asyncio.Queue) -> None:
        size = self._limits.batch_prompts or max(1, self._limits.batch_sequences // plan.group_size)
        batches = [plan.prompts[i : i + size] for i in range(0, len(plan.prompts), size)]
        ahead = asyncio.Semaphore(self._limits.batches_ahead)

        async def run(index: int, prompts: list[PreparedPrompt]) -> None:
            async with ahead:
                for group in await self._generate_and_score(plan, index, prompts):
                    await queue.put(group)

        try:
            async with asyncio.TaskGroup() as tasks:
                for index, prompts in enumerate(batches):
                    tasks.create_task(run(index, prompts))
        except* RequestError as errors:
            await queue.put(errors.exceptions[0])
        else:
            await queue.put(None)

    async def _generate_and_score(
        self, plan: GeneratePlan, batch_index: int, prompts: list[PreparedPrompt]
    ) -> list[rollout_pb2.RolloutGroup]:
        sampling = plan.sampling
        if sampling.seed is not None:
            sampling = dataclasses.replace(sampling, seed=(sampling.seed + batch_index * SEED_STRIDE) % 2**64)
        try:
            started = time.monotonic()
            completions = await self._generate_groups(plan, prompts, sampling)
            generate_seconds = time.monotonic() - started
            whole = []
            for prompt, group in zip(prompts, completions, strict=True):
                try:
                    group_version(group)
                    whole.append((prompt, group, [self._encoder.decode(c.token_ids) for c in group]))
                except MixedVersionGroup as exc:
                    logger.warning(
                        "dropping group of prompt %r: %s (the learner re-sends it)", prompt.id, exc
                    )
            items = [
                item
                for prompt, group, texts in whole
                for item in score_items(prompt, group, texts, self._encoder.decode(prompt.token_ids))
            ]
            started = time.monotonic()
            with self._busy.busy():
                results = await self._reward.score(items, plan.reward_spec) if items else []
            score_seconds = time.monotonic() - started
        except RewardUnavailable as exc:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, f"{exc}; no unscored group was sent") from exc
        except RewardRefused as exc:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"reward_spec or references: {exc}") from exc
        except WeightsUnusable as exc:
            raise RequestError(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from exc
        except BackendError as exc:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, f"generator backend failed: {exc}") from exc
        except ValueError as exc:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from exc
        except Exception as exc:
            logger.exception("batch %d failed", batch_index)
            raise RequestError(
                grpc.StatusCode.INTERNAL,
                f"internal error ({type(exc).__name__}); see the rollout service log",
            ) from exc
        groups = []
        offset = 0
        for prompt, group, texts in whole:
            scored = results[offset : offset + len(group)]
            offset += len(group)
            groups.append(assemble_group(prompt, group, texts, scored, generate_seconds, score_seconds))
        return groups

    async def _generate_groups(
        self, plan: GeneratePlan, prompts: list[PreparedPrompt], sampling: SamplingParams
    ) -> list[list[GeneratedCompletion] | list[EpisodeCompletion]]:
        """G completions per prompt: one generate call for single-turn prompts, episodes for the rest."""
        single = [p for p in prompts if p.environment is None]
        episodic = [p for p in prompts if p.environment is not None]
        groups: dict[str, list] = {}
        if single:
            results = await self._generate_call([p.token_ids for p in single], plan.group_size, sampling)
            groups.update({p.id: g for p, g in zip(single, results, strict=True)})
        if episodic:
            whole_turns = dataclasses.replace(sampling, partial=False)  # episodes are never partial
            async with self._episode_gate.shared():  # no weight push inside the batch (episode_runner)
                results = await run_episodes(
                    episodic,
                    plan.group_size,
                    whole_turns,
                    self._generate_call,
                    encoder=self._encoder,
                    generator=self._generator.info(),
                    limits=self._limits,
                )
            groups.update({p.id: g for p, g in zip(episodic, results, strict=True)})
        return [groups[p.id] for p in prompts]

    async def _generate_call(
        self, prompts_token_ids: Sequence[Sequence[int]], n: int, sampling: SamplingParams
    ) -> list[list[GeneratedCompletion]]:
        async with self._generation_slots:
            with self._busy.busy():
                return await self._generator.generate(prompts_token_ids, n, sampling)

    # --- UpdateWeights ------------------------------------------------------------------------
    async def UpdateWeights(
        self, request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> rollout_pb2.UpdateWeightsResponse:
        """Chunks arrive as their wire bytes (see app.py's registration) and are decoded in place."""
        # The model's specs: a stream claiming a tensor the model lacks is refused before any
        # memory is claimed for it; non-finite floats are refused too (the decoder's default).
        decoder = WeightStreamDecoder(
            max_total_bytes=self._limits.max_update_bytes,
            buffers=self._receive_buffers,
            expected=self._generator.parameter_specs(),
            adapter_expected=self._adapter_expected,
        )
        started: float | None = None
        try:
            async for chunk in request_iterator:
                started = started or time.monotonic()
                await asyncio.to_thread(decoder.feed, chunk)  # copying bytes: keep the loop free
            decoded = decoder.finish()
        except WeightStreamError as exc:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"weight stream: {exc}; nothing was applied"
            )
        received = time.monotonic()
        async with self._update_lock:
            current = self._generator.info().weight_version
            # The learner owns the numbering: a version at or below ours is legitimate after the
            # learner resumed from an earlier checkpoint, and its weights are the ones to serve.
            if decoded.policy_version < 0:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"policy_version {decoded.policy_version} is negative; versions start at 0",
                )
            if decoded.delta_base is not None:
                names = set(decoded.tensors) | set(decoded.deltas)
                refusal = self._served.refuse_delta(decoded.delta_base, names, self._generator)
                if refusal is not None:
                    self._receive_buffers.recycle(decoded.tensors)
                    await context.abort(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"{refusal}; nothing was applied (still version {current}): send every tensor "
                        "whole, without delta_base",
                    )
            try:
                async with self._episode_gate.exclusive():  # after running episode batches
                    await self._apply(decoded)
            except WeightUpdateError as exc:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"{exc}; nothing was applied (still version {current})"
                )
            except BackendError as exc:
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE, f"{exc}; nothing was applied (still version {current})"
                )
            finally:  # the generator copied what it kept (Generator.load_weights' contract)
                self._receive_buffers.recycle(decoded.tensors)
            fingerprint = await asyncio.to_thread(self._served.after_update, decoded, self._generator)
            self._rechecked_at = time.monotonic()
        applied = time.monotonic()
        logger.info(
            "policy version %d -> %d: %d tensors%s, %.1f MB, received in %.2f s, applied in %.2f s, "
            "fingerprint %s",
            current,
            decoded.policy_version,
            len(decoded.tensors) + len(decoded.deltas),
            f" ({len(decoded.deltas)} by delta on v{decoded.delta_base.policy_version})"
            if decoded.delta_base is not None
            else "",
            decoded.total_bytes / 1e6,
            received - (started or received),
            applied - received,
            fingerprint or "none",
        )
        reply = rollout_pb2.UpdateWeightsResponse(
            policy_version=decoded.policy_version,
            tensors=len(decoded.tensors) + len(decoded.deltas),
            bytes=decoded.total_bytes,
            receive_seconds=received - (started or received),
            apply_seconds=applied - received,
            takes_deltas=self._served.takes_deltas(self._generator),
        )
        if fingerprint is not None:
            reply.fingerprint.CopyFrom(fingerprint.to_proto())
        return reply

    async def _apply(self, decoded: DecodedWeights) -> None:
        """Model weights, or an adapter (the decoder let one through only for an AdapterReceiver)."""
        generator = self._generator
        if decoded.delta_base is not None:
            if not isinstance(generator, DeltaReceiver):  # pragma: no cover - refuse_delta refused it
                raise WeightUpdateError("this backend cannot apply a delta")
            await generator.load_delta(decoded.tensors, decoded.deltas, decoded.policy_version)
        elif decoded.lora_adapter is None:
            await generator.load_weights(decoded.tensors, decoded.policy_version)
        elif isinstance(generator, AdapterReceiver):
            spec = validate_adapter_spec(decoded.lora_adapter)
            await generator.load_adapter(decoded.tensors, spec, decoded.policy_version)
        else:  # pragma: no cover - _adapter_expected refused the stream at its first chunk
            raise WeightUpdateError("this backend cannot serve a LoRA adapter")

    def _adapter_expected(self, spec: rollout_pb2.LoraAdapterSpec) -> Mapping[str, TensorSpec]:
        """The decoder's check of an adapter stream's first chunk (ValueError -> INVALID_ARGUMENT)."""
        if not isinstance(self._generator, AdapterReceiver):
            raise ValueError(
                f"the {self._generator.info().backend!r} backend cannot serve a LoRA adapter; "
                "send merged weights (push.lora_mode = 'merged')"
            )
        return self._generator.adapter_tensor_specs(validate_adapter_spec(spec))

    # --- GetInfo ------------------------------------------------------------------------------
    async def GetInfo(
        self, request: rollout_pb2.GetInfoRequest, context: grpc.aio.ServicerContext
    ) -> rollout_pb2.RolloutInfo:
        info = self._generator.info()
        uptime, busy = self._busy.read()
        self._recheck_if_due()
        fingerprint, takes_deltas = self._served.to_proto(self._generator)
        receiver = self._distributed.receiver()
        return rollout_pb2.RolloutInfo(
            model=info.model,
            backend=info.backend,
            policy_version=info.weight_version,
            in_flight_prompts=self._in_flight_prompts,
            in_flight_requests=self._in_flight_requests,
            max_context_length=info.max_context_length,
            eos_token_id=info.eos_token_ids[0] if info.eos_token_ids else -1,
            pad_token_id=info.pad_token_id,
            weight_sync_ranks=receiver.weight_sync_ranks()
            if (receiver := self._distributed.receiver())
            else 0,
            weight_sync_group=receiver.weight_sync_group() if receiver else "",
            uptime_seconds=uptime,
            busy_seconds=busy,
            fingerprint=fingerprint,
            takes_deltas=takes_deltas,
            host_cpu_threads=info.host_cpu_threads,  # None leaves it unset: unknown
        )

    def _recheck_if_due(self) -> None:
        """Hash the served weights again in the background when the last reading is older than
        `fingerprint_recheck_s`: the next GetInfo reports what is served then (served_weights.recheck)."""
        every = self._limits.fingerprint_recheck_s
        if not every or time.monotonic() - self._rechecked_at < every:
            return
        if self._recheck is not None and not self._recheck.done():
            return
        self._rechecked_at = time.monotonic()
        self._recheck = asyncio.create_task(self._recheck_served(), name="fingerprint-recheck")

    async def _recheck_served(self) -> None:
        try:
            async with self._update_lock:  # never while an update changes the tensors
                await asyncio.to_thread(self._served.recheck, self._generator)
        except Exception:  # a failed recheck must not take the service down: say so, try again later
            logger.exception("re-reading the served weights' fingerprint failed")

    async def close(self) -> None:
        """Stop a background fingerprint recheck (the server has stopped)."""
        if self._recheck is not None:
            self._recheck.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recheck

    # --- weights over a collective group (distributed_updates.py) ----------------------------
    async def InitWeightSync(
        self, request: rollout_pb2.InitWeightSyncRequest, context: grpc.aio.ServicerContext
    ) -> rollout_pb2.InitWeightSyncResponse:
        return await self._distributed.init(request, context)

    async def UpdateWeightsDistributed(
        self, request: rollout_pb2.DistributedWeightsRequest, context: grpc.aio.ServicerContext
    ) -> rollout_pb2.UpdateWeightsResponse:
        return await self._distributed.bucket(request, context)
