"""Model turns of many episodes, gathered into batched generate calls.

Episodes ask for their next turn whenever their environment step is done; sent one by one, the hf
backend would run a batch of one per turn. The batcher holds the turns that arrive together and sends
them as one call: it flushes when every live episode is waiting, or `gather_s` after it began gathering,
whichever comes first. While `max_calls` calls are running (1 for hf, whose calls run one at a time
anyway), new turns keep gathering for the next call. Turns that differ in max_new_tokens or stop tokens
go in separate calls of the same flush (a turn is never sampled past its own limit).

Seeds: with a seed, call k samples with `seed + k * SEED_STRIDE` (k = 0 is the group's first turn,
sampled by the runner), so a seeded episode batch is reproducible as long as the environments take the
same turns in the same order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from grpo_rollout.backends.contract import GeneratedCompletion, SamplingParams

SEED_STRIDE = 7_919  # above any batch's prompt count: the sglang backend seeds prompt i with seed + i
GATHER_S = 0.005  # how long a flush waits for more turns once it began gathering (seconds)

GenerateCall = Callable[
    [Sequence[Sequence[int]], int, SamplingParams], Awaitable[list[list[GeneratedCompletion]]]
]


def merged_stops(request: Sequence[int], environment: Sequence[int]) -> tuple[int, ...]:
    """A turn stops on the request's stop tokens and on the environment's stop strings' tokens."""
    return tuple(sorted({*request, *environment}))


@dataclass
class _Turn:
    context: list[int]
    max_new_tokens: int
    stop_token_ids: tuple[int, ...]
    answer: asyncio.Future[GeneratedCompletion]


class TurnBatcher:
    def __init__(
        self,
        generate: GenerateCall,
        sampling: SamplingParams,
        live_episodes: int,
        gather_s: float = GATHER_S,
        max_calls: int = 1,
    ) -> None:
        self._generate = generate
        self._sampling = sampling
        self._live = live_episodes
        self._gather_s = gather_s
        self._calls = asyncio.Semaphore(max_calls)
        self._pending: list[_Turn] = []
        self._changed = asyncio.Event()
        self._call_index = 0
        self._flushes: set[asyncio.Task[None]] = set()

    async def sample(
        self, context: list[int], max_new_tokens: int, stop_token_ids: tuple[int, ...]
    ) -> GeneratedCompletion:
        """The next model turn of one episode (its whole context as the prompt)."""
        answer = asyncio.get_running_loop().create_future()
        self._pending.append(_Turn(context, max_new_tokens, stop_token_ids, answer))
        self._changed.set()
        return await answer

    def episode_ended(self) -> None:
        """One fewer episode can ask for turns: the rest may be all waiting now."""
        self._live -= 1
        self._changed.set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TurnBatcher]:
        loop_task = asyncio.create_task(self._loop())
        try:
            yield self
        finally:
            loop_task.cancel()
            for task in [loop_task, *self._flushes]:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _loop(self) -> None:
        try:
            await self._gather_and_flush()
        except Exception as exc:  # a bug here must fail the waiting episodes, not hang them
            for turn in self._pending:
                if not turn.answer.done():
                    turn.answer.set_exception(exc)
            raise

    async def _gather_and_flush(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._changed.clear()
                await self._changed.wait()
            await self._calls.acquire()
            deadline = loop.time() + self._gather_s
            while len(self._pending) < self._live and (left := deadline - loop.time()) > 0:
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), left)
            batch, self._pending = self._pending, []
            task = asyncio.create_task(self._flush(batch))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def _flush(self, batch: list[_Turn]) -> None:
        try:
            by_limits: dict[tuple[int, tuple[int, ...]], list[_Turn]] = {}
            for turn in batch:
                by_limits.setdefault((turn.max_new_tokens, turn.stop_token_ids), []).append(turn)
            await asyncio.gather(*(self._call(turns) for turns in by_limits.values()))
        finally:
            self._calls.release()

    async def _call(self, turns: list[_Turn]) -> None:
        self._call_index += 1
        seed = self._sampling.seed
        sampling = dataclasses.replace(
            self._sampling,
            max_new_tokens=turns[0].max_new_tokens,
            stop_token_ids=merged_stops(self._sampling.stop_token_ids, turns[0].stop_token_ids),
            seed=None if seed is None else (seed + self._call_index * SEED_STRIDE) % 2**64,
        )
        try:
            results = await self._generate([t.context for t in turns], 1, sampling)
        except Exception as exc:  # every turn of the call fails the same way; their episodes raise it
            for turn in turns:
                if not turn.answer.done():
                    turn.answer.set_exception(exc)
            return
        for turn, (result,) in zip(turns, results, strict=True):
            if not turn.answer.done():
                turn.answer.set_result(result)
