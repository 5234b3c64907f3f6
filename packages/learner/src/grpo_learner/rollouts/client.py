"""The learner's side of `RolloutService.Generate`: every prompt comes back as a group, or we fail loudly.

A call spreads its prompts over the READY services of the rollout pool by load (water-filling over
in-flight prompts: GetInfo's figure plus what this learner has outstanding there), opens one
streaming Generate per chosen service, and yields groups as they arrive (in any order). When a
stream breaks, ends without some prompts, or is abandoned because its service went DOWN, exactly
those prompts are sent again after an exponential backoff, preferring services that did not just
fail. Prompt ids are idempotency keys: a group that arrives twice is yielded once. Only errors that
a retry cannot fix (INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED) stop the call at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import grpc
from grpc import StatusCode
from grpo.v1 import reward_pb2, rollout_pb2
from grpo_common.reward_terms import V1_WEIGHT_FIELDS

from grpo_learner.config import RolloutConfig, SamplingConfig
from grpo_learner.config.environment import EnvironmentConfig
from grpo_learner.config.reward import RewardConfig
from grpo_learner.data.prompts import PromptItem
from grpo_learner.rollouts.load_spread import water_fill
from grpo_learner.rollouts.pool import Member, RolloutPool

logger = logging.getLogger(__name__)

FATAL = frozenset({StatusCode.INVALID_ARGUMENT, StatusCode.UNAUTHENTICATED, StatusCode.PERMISSION_DENIED})


class RolloutError(RuntimeError):
    """Prompts could not be generated after every retry, or a request was refused as invalid."""


def prompt_to_proto(item: PromptItem) -> rollout_pb2.Prompt:
    return rollout_pb2.Prompt(
        id=item.id,
        text=item.text,
        token_ids=list(item.token_ids),
        reference=item.reference,
        task=item.task,
        fields_json=item.fields_json,
        environment=item.environment,
    )


def reward_spec_to_proto(reward: RewardConfig) -> reward_pb2.RewardSpec:
    """The [reward] section as the RewardSpec every RolloutRequest carries (v1.1 `components`).

    The built-in terms are also written to the v1.0 fields (correctness_weight always present), which a
    v1.1 server ignores when `components` is set: a v1.0 reward service then computes the same reward
    for specs of built-ins alone instead of silently falling back to correctness only.
    """
    spec = reward_pb2.RewardSpec(
        correctness_weight=1.0, fallback_last_number=reward.fallback_last_number, timeout_s=reward.timeout_s
    )
    if not reward.components:
        return spec
    spec.correctness_weight = 0.0
    for component in reward.components:
        term = spec.components.add(name=component.name, weight=component.weight)
        if component.max_completion_tokens is not None:  # the length term's budget (config: length only)
            term.max_completion_tokens = component.max_completion_tokens
            term.overlong_buffer_tokens = component.overlong_buffer_tokens
            spec.max_completion_tokens = term.max_completion_tokens
            spec.overlong_buffer_tokens = term.overlong_buffer_tokens
        if component.name in V1_WEIGHT_FIELDS:
            setattr(spec, V1_WEIGHT_FIELDS[component.name], component.weight)
    return spec


def environment_to_proto(environment: EnvironmentConfig) -> rollout_pb2.EnvironmentSpec:
    """The [rollout.environment] section as the EnvironmentSpec every RolloutRequest carries (v1.2).

    Sent even without a name: rows with an `env` column then run their episodes under its max_turns,
    max_turn_tokens and config, and the other rows stay single-turn ("" = single-turn)."""
    return rollout_pb2.EnvironmentSpec(
        name=environment.name,
        max_turns=environment.max_turns,
        max_turn_tokens=environment.max_turn_tokens or 0,
        config_json=environment.config_json(),
    )


def sampling_to_proto(sampling: SamplingConfig, seed: int | None = None) -> rollout_pb2.SamplingParams:
    params = rollout_pb2.SamplingParams(
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k,
        max_new_tokens=sampling.max_new_tokens,
        stop_token_ids=sampling.stop_token_ids,
    )
    if seed is not None:
        params.seed = seed
    return params


@dataclass
class _StreamEnd:
    address: str
    prompt_ids: list[str]
    code: StatusCode | None = None  # None: the stream ended normally
    details: str = ""
    abandoned: bool = False  # its service went DOWN while it was open
    crash: Exception | None = None  # an unexpected error (a bug), re-raised by generate


@dataclass
class _Resend:
    prompts: list[PromptItem]


@dataclass
class _Arrival:
    """A group as it came off a stream: from whom, and when (the service's weights epoch)."""

    group: rollout_pb2.RolloutGroup
    member: Member
    epoch: int


class RolloutClient:
    """Use inside a running event loop; `await close()` when done.

    `addresses` is a list of host:port (the client then owns a pool of its own) or a `RolloutPool`
    shared with the `WeightPusher`, so that services that (re)join get weights before prompts.
    """

    def __init__(
        self,
        addresses: Sequence[str] | RolloutPool,
        settings: RolloutConfig,
        *,
        group_size: int,
        sampling: SamplingConfig,
        apply_chat_template: bool,
        reward_spec: reward_pb2.RewardSpec | None = None,
        environment: rollout_pb2.EnvironmentSpec | None = None,
        seed: int | None = None,
        on_stale_service: Callable[[str], None] | None = None,
    ) -> None:
        """`settings`: the `[rollout]` section (deadline, attempts, backoff; the pool's probes and
        channel when `addresses` is a list), read, never copied. `group_size` and `sampling` are the
        caller's (training uses the section's, evaluation its own)."""
        if isinstance(addresses, RolloutPool):
            self.pool = addresses
        else:
            if not addresses and settings.addresses_file is None:
                raise ValueError(
                    "rollout.addresses is empty: name at least one rollout service (host:port) "
                    "or a rollout.addresses_file"
                )
            self.pool = RolloutPool(addresses, settings)
        self.pool.retain()
        self.settings = settings
        self.group_size = group_size
        self.sampling = sampling
        self.apply_chat_template = apply_chat_template
        self.reward_spec = reward_spec
        self.environment = environment  # None: single-turn (v1.1 requests)
        self.seed = seed
        # Called with the address of a service whose weights are older than a request needs (a
        # restarted process); a shared pool already routes it to the pusher, this is for others.
        self.on_stale_service = on_stale_service
        self._next = 0  # rotates which service gets the odd prompt among equally loaded ones
        self.sent_prompts: Counter[str] = Counter()  # address -> prompts sent there (re-sends too)

    @property
    def addresses(self) -> list[str]:
        return self.pool.addresses

    def _request(self, prompts: Sequence[PromptItem], min_policy_version: int) -> rollout_pb2.RolloutRequest:
        request = rollout_pb2.RolloutRequest(
            prompts=[prompt_to_proto(p) for p in prompts],
            group_size=self.group_size,
            sampling=sampling_to_proto(self.sampling, self._request_seed(prompts)),
            min_policy_version=min_policy_version,
            apply_chat_template=self.apply_chat_template,
            partial=self.settings.partial,
        )
        if self.reward_spec is not None:
            request.reward_spec.CopyFrom(self.reward_spec)
        if self.environment is not None:
            request.environment.CopyFrom(self.environment)
        return request

    def _request_seed(self, prompts: Sequence[PromptItem]) -> int | None:
        """A sampling seed that is a pure function of the run seed and the prompts' ids.

        Prompt ids are unique per draw, so every request samples differently, yet a rerun with the
        same seed (or a re-sent request) samples the same completions: runs are reproducible.
        """
        if self.seed is None:
            return None
        digest = zlib.crc32("\n".join(p.id for p in prompts).encode())
        return (self.seed * 1_000_003 + digest) % 2**63

    def _assign(
        self, members: list[Member], prompts: list[PromptItem]
    ) -> list[tuple[Member, list[PromptItem]]]:
        """Water-fill the prompts over the members' loads (idle services get more)."""
        start = self._next % len(members)
        self._next += 1
        order = members[start:] + members[:start]
        counts = water_fill({m.address: m.load() for m in order}, len(prompts), [m.address for m in order])
        shares, offset = [], 0
        for member in order:
            count = counts.get(member.address, 0)
            if count:
                shares.append((member, prompts[offset : offset + count]))
                offset += count
        return shares

    async def _stream(
        self, member: Member, prompts: list[PromptItem], min_policy_version: int, queue: asyncio.Queue
    ) -> None:
        """One Generate call; always ends with a _StreamEnd on the queue (unless cancelled)."""
        ids = [p.id for p in prompts]
        unreceived = set(ids)
        down = member.down
        epoch = member.weights_epoch
        end = _StreamEnd(member.address, ids)

        async def read() -> None:
            call = member.stub.Generate(
                self._request(prompts, min_policy_version), timeout=self.settings.request_timeout_s
            )
            async for group in call:
                if group.prompt_id in unreceived:
                    unreceived.discard(group.prompt_id)
                    member.outstanding -= 1
                await queue.put(_Arrival(group, member, epoch))

        reader = asyncio.create_task(read())
        watcher = asyncio.create_task(down.wait())
        try:
            await asyncio.wait({reader, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not reader.done():  # the service went DOWN: give up on this stream
                end.abandoned = True
                reader.cancel()
            try:
                await reader
            except asyncio.CancelledError:
                if (task := asyncio.current_task()) is not None and task.cancelling():
                    raise  # the whole call is being cancelled
                if not end.abandoned:  # its channel was closed under it
                    end.code, end.details = StatusCode.CANCELLED, "the channel to this service was closed"
            except grpc.aio.AioRpcError as exc:
                end.code, end.details = exc.code(), exc.details() or ""
            except Exception as exc:  # not a transport problem: a bug; stop the call, say where
                end.crash = exc
        finally:
            for task in (reader, watcher):
                task.cancel()
            member.outstanding -= len(unreceived)
            unreceived.clear()
            self.pool.stream_ended(member, failed=end.code is not None or end.abandoned)
        await queue.put(end)

    async def generate(
        self, prompts: Sequence[PromptItem], min_policy_version: int = 0
    ) -> AsyncIterator[rollout_pb2.RolloutGroup]:
        """Yield one RolloutGroup per prompt (any order); RolloutError if some never come back."""
        pending = {p.id: p for p in prompts}
        if len(pending) != len(prompts):
            raise ValueError("prompt ids must be unique within a call (they are idempotency keys)")
        sends = dict.fromkeys(pending, 0)  # how often each prompt was sent (or found no service)
        errors: list[str] = []
        queue: asyncio.Queue = asyncio.Queue()
        tasks: set[asyncio.Task] = set()

        def spawn(coroutine) -> None:
            task = asyncio.create_task(coroutine)
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        def resend_later(orphans: list[PromptItem]) -> None:
            exhausted = [p.id for p in orphans if sends[p.id] >= self.settings.max_attempts]
            if exhausted:
                missing = ", ".join(sorted(exhausted)[:5]) + (" ..." if len(exhausted) > 5 else "")
                raise RolloutError(
                    f"{len(exhausted)} prompt(s) got no group after {self.settings.max_attempts} attempts "
                    f"({missing}); last errors: {'; '.join(errors[-3:]) or 'streams ended without them'}"
                )
            attempt = max(sends[p.id] for p in orphans)
            delay = min(self.settings.backoff_s * 2 ** (attempt - 1), self.settings.max_backoff_s)
            logger.info("re-sending %d prompt(s) in %.2f s (attempt %d)", len(orphans), delay, attempt + 1)

            async def later() -> None:
                await asyncio.sleep(delay)
                await queue.put(_Resend(orphans))

            spawn(later())

        async def send(batch: list[PromptItem]) -> None:
            batch = [p for p in batch if p.id in pending]
            if not batch:
                return
            members = self.pool.candidates(min_policy_version)
            if members:
                await self.pool.refresh_loads(members)
                members = self.pool.candidates(min_policy_version)
            for prompt in batch:
                sends[prompt.id] += 1
            if not members:
                errors.append(f"no rollout service is ready ({self.pool.describe()})")
                logger.warning(
                    "no rollout service is ready for %d prompt(s): %s", len(batch), self.pool.describe()
                )
                resend_later(batch)
                return
            for member, share in self._assign(members, batch):
                member.outstanding += len(share)
                self.sent_prompts[member.address] += len(share)
                spawn(self._stream(member, share, min_policy_version, queue))

        try:
            await send(list(pending.values()))
            while pending:
                item = await queue.get()
                if isinstance(item, _Resend):
                    await send(item.prompts)
                elif isinstance(item, _StreamEnd):
                    self._record(item, errors)
                    orphans = [pending[i] for i in item.prompt_ids if i in pending]
                    if orphans:
                        resend_later(orphans)
                elif item.member.weights_epoch != item.epoch:
                    logger.warning(
                        "dropping the group of prompt %r from %s (policy version %d): the service was "
                        "found serving other weights than pushed; the prompt is re-sent",
                        item.group.prompt_id,
                        item.member.address,
                        item.group.policy_version,
                    )
                elif pending.pop(item.group.prompt_id, None) is not None:
                    yield item.group
        finally:
            for task in list(tasks):
                task.cancel()
            for task in list(tasks):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _record(self, end: _StreamEnd, errors: list[str]) -> None:
        if end.crash is not None:
            raise RolloutError(f"reading the stream from {end.address} failed unexpectedly") from end.crash
        if end.abandoned:
            message = f"{end.address}: unhealthy, its stream was abandoned"
        elif end.code is None:
            return
        else:
            message = f"{end.address}: {end.code.name}: {end.details}"
        if end.code in FATAL:
            raise RolloutError(f"rollout service refused the request: {message}")
        if end.code == StatusCode.FAILED_PRECONDITION:
            self.pool.mark_stale(end.address)
            if self.on_stale_service is not None:
                self.on_stale_service(end.address)
        errors.append(message)
        logger.warning("rollout stream failed, will re-send its missing prompts: %s", message)

    async def close(self) -> None:
        await self.pool.release()
