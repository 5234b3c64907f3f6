"""Waiting on one collective on rank 0 and the RPCs that make the other ranks join it.

Why its own module: telling the failure modes apart is the subtle part of the NCCL weight sync
(`nccl_sync`). A rollout service that answers ABORTED refused a bucket after its engines received
it, so the broadcast is about to finish and the group stays usable; any other error means some
engines may never have joined, so rank 0 is stuck in the collective or the group's collectives
are out of step, and the group must be formed anew.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

import grpc

GRACE_S = 5.0  # how long a finished-with-error RPC waits for the broadcast before the group is declared stuck


class WeightSyncError(RuntimeError):
    """A weight sync failed; no service adopted the version unless the message says so."""


async def await_collective_and_calls(
    collective: asyncio.Future,
    calls: list[asyncio.Future],
    addresses: Sequence[str],
    what: str,
    mark_broken: Callable[[], None],
) -> list:
    """Await both; raise WeightSyncError naming every failing service and whether the group survives.

    `addresses[i]` is the service `calls[i]` went to. `mark_broken` is called before raising when
    the group is unusable. Only ABORTED (an engine refused after receiving) keeps the group: any
    other error means some engines did not take part, so rank 0 is stuck or the group's
    collectives are out of step.
    """
    pending: set[asyncio.Future] = {collective, *calls}
    while pending:
        _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if collective.done() and collective.exception() is not None:
            _give_up(collective, calls, mark_broken)
            raise WeightSyncError(
                f"{what}: rank 0's side failed: {collective.exception()}; the group is unusable, "
                "close() and connect() again"
            ) from collective.exception()
        failed = [call for call in calls if call.done() and _rpc_error(call) is not None]
        if not failed or collective.done():
            continue
        if all(_code(call) == grpc.StatusCode.ABORTED for call in failed):
            # Those engines received before refusing, so the broadcast is about to finish.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(collective), GRACE_S)
        if not collective.done():
            errors = _errors(addresses, calls)
            _give_up(collective, calls, mark_broken)
            raise WeightSyncError(
                f"{what}: {errors}; engines behind it never joined the broadcast, so rank 0 "
                "is stuck in it and the group is unusable: close() and connect() again"
            )
    if errors := _errors(addresses, calls):
        failed = [call for call in calls if _rpc_error(call) is not None]
        if all(_code(call) == grpc.StatusCode.ABORTED for call in failed):
            raise WeightSyncError(f"{what}: {errors}; the group is still usable")
        mark_broken()
        raise WeightSyncError(
            f"{what}: {errors}; the engines behind those services may not have taken part in the "
            "broadcast, so the group is out of step and unusable: close() and connect() again"
        )
    return [call.result() for call in calls]


def _give_up(
    collective: asyncio.Future, calls: list[asyncio.Future], mark_broken: Callable[[], None]
) -> None:
    mark_broken()
    for call in calls:
        call.cancel()
    # The stuck collective ends with an error later (its timeout, or a peer leaving): expected.
    collective.add_done_callback(lambda done: done.cancelled() or done.exception())


def _errors(addresses: Sequence[str], calls: list[asyncio.Future]) -> str:
    parts = []
    for address, call in zip(addresses, calls, strict=True):
        error = _rpc_error(call) if call.done() else None
        if error is not None:
            parts.append(f"rollout {address} answered {error}")
    return "; ".join(parts)


def _code(call: asyncio.Future) -> grpc.StatusCode | None:
    error = None if call.cancelled() else call.exception()
    return error.code() if isinstance(error, grpc.aio.AioRpcError) else None


def _rpc_error(call: asyncio.Future) -> str | None:
    if call.cancelled():
        return "CANCELLED"
    error = call.exception()
    if error is None:
        return None
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return f"{type(error).__name__}: {error}"
