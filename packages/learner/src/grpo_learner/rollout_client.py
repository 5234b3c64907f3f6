"""The learner's side of `RolloutService.Generate`: every prompt comes back as a group, or we fail loudly.

A call spreads its prompts over all rollout addresses (one streaming Generate per address), yields
groups as they arrive (in any order), and when a stream breaks or ends without some prompts, sends
exactly those prompts again, preferring addresses that did not just fail, with exponential backoff.
Prompt ids are idempotency keys: a group that arrives twice is yielded once. Only errors that a retry
cannot fix (INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED) stop the call at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import grpc
from grpc import StatusCode
from grpo.v1 import reward_pb2, rollout_pb2, rollout_pb2_grpc
from grpo_common.channel import ChannelConfig, create_channel

from grpo_learner.config import SamplingConfig
from grpo_learner.prompts import PromptItem

logger = logging.getLogger(__name__)

FATAL = frozenset({StatusCode.INVALID_ARGUMENT, StatusCode.UNAUTHENTICATED, StatusCode.PERMISSION_DENIED})


class RolloutError(RuntimeError):
    """Prompts could not be generated after every retry, or a request was refused as invalid."""


def prompt_to_proto(item: PromptItem) -> rollout_pb2.Prompt:
    return rollout_pb2.Prompt(
        id=item.id, text=item.text, token_ids=list(item.token_ids), reference=item.reference, task=item.task
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
    error: grpc.aio.AioRpcError | None


class RolloutClient:
    """Use inside a running event loop; `await close()` when done."""

    def __init__(
        self,
        addresses: Sequence[str],
        *,
        group_size: int,
        sampling: SamplingConfig,
        channel_config: ChannelConfig | None = None,
        request_timeout_s: float = 600.0,
        max_attempts: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        apply_chat_template: bool = True,
        reward_spec: reward_pb2.RewardSpec | None = None,
        seed: int | None = None,
        on_stale_service: Callable[[str], None] | None = None,
    ) -> None:
        if not addresses:
            raise ValueError("rollout.addresses is empty: name at least one rollout service (host:port)")
        self.addresses = list(addresses)
        self.group_size = group_size
        self.sampling = sampling
        self.request_timeout_s = request_timeout_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.apply_chat_template = apply_chat_template
        self.reward_spec = reward_spec
        self.seed = seed
        # Called with the address of a service whose weights are older than a request needs (a
        # restarted process): the weight pusher sends it the current weights, then re-sends succeed.
        self.on_stale_service = on_stale_service
        self._channels = {a: create_channel(a, channel_config) for a in self.addresses}
        self._stubs = {a: rollout_pb2_grpc.RolloutServiceStub(c) for a, c in self._channels.items()}
        self._recent_failures: dict[str, int] = dict.fromkeys(self.addresses, 0)
        self._next = 0  # rotates which address gets the first share

    def _request(self, prompts: Sequence[PromptItem], min_policy_version: int) -> rollout_pb2.RolloutRequest:
        request = rollout_pb2.RolloutRequest(
            prompts=[prompt_to_proto(p) for p in prompts],
            group_size=self.group_size,
            sampling=sampling_to_proto(self.sampling, self._request_seed(prompts)),
            min_policy_version=min_policy_version,
            apply_chat_template=self.apply_chat_template,
        )
        if self.reward_spec is not None:
            request.reward_spec.CopyFrom(self.reward_spec)
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

    def _assign(self, prompts: list[PromptItem]) -> dict[str, list[PromptItem]]:
        """Split prompts evenly over the healthiest addresses (fewest recent failures)."""
        fewest = min(self._recent_failures.values())
        healthy = [a for a in self.addresses if self._recent_failures[a] == fewest]
        start = self._next % len(healthy)
        self._next += 1
        order = healthy[start:] + healthy[:start]
        shares: dict[str, list[PromptItem]] = {}
        for index, prompt in enumerate(prompts):
            shares.setdefault(order[index % len(order)], []).append(prompt)
        return shares

    async def _stream(
        self, address: str, prompts: list[PromptItem], min_policy_version: int, queue: asyncio.Queue
    ) -> None:
        error = None
        try:
            call = self._stubs[address].Generate(
                self._request(prompts, min_policy_version), timeout=self.request_timeout_s
            )
            async for group in call:
                await queue.put(group)
        except grpc.aio.AioRpcError as exc:
            error = exc
        await queue.put(_StreamEnd(address, error))

    async def generate(
        self, prompts: Sequence[PromptItem], min_policy_version: int = 0
    ) -> AsyncIterator[rollout_pb2.RolloutGroup]:
        """Yield one RolloutGroup per prompt (any order); RolloutError if some never come back."""
        pending = {p.id: p for p in prompts}
        if len(pending) != len(prompts):
            raise ValueError("prompt ids must be unique within a call (they are idempotency keys)")
        errors: list[str] = []
        for attempt in range(self.max_attempts):
            if attempt:
                delay = min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)
                logger.info(
                    "re-sending %d prompt(s) in %.1f s (attempt %d)", len(pending), delay, attempt + 1
                )
                await asyncio.sleep(delay)
            queue: asyncio.Queue = asyncio.Queue()
            shares = self._assign(list(pending.values()))
            tasks = [
                asyncio.create_task(self._stream(address, share, min_policy_version, queue))
                for address, share in shares.items()
            ]
            try:
                open_streams = len(tasks)
                while open_streams:
                    item = await queue.get()
                    if isinstance(item, _StreamEnd):
                        open_streams -= 1
                        self._record(item, errors)
                        continue
                    if pending.pop(item.prompt_id, None) is not None:
                        yield item
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if not pending:
                return
        missing = ", ".join(sorted(pending)[:5]) + (" ..." if len(pending) > 5 else "")
        raise RolloutError(
            f"{len(pending)} prompt(s) got no group after {self.max_attempts} attempts ({missing}); "
            f"last errors: {'; '.join(errors[-3:]) or 'streams ended without them'}"
        )

    def _record(self, end: _StreamEnd, errors: list[str]) -> None:
        if end.error is None:
            self._recent_failures[end.address] = 0
            return
        code, details = end.error.code(), end.error.details()
        message = f"{end.address}: {code.name}: {details}"
        if code in FATAL:
            raise RolloutError(f"rollout service refused the request: {message}")
        if code == StatusCode.FAILED_PRECONDITION and self.on_stale_service is not None:
            self.on_stale_service(end.address)
        self._recent_failures[end.address] += 1
        errors.append(message)
        logger.warning("rollout stream failed, will re-send its missing prompts: %s", message)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
