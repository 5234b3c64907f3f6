"""The outcome of one call made to every SGLang worker at once: who failed, and what kind of failure."""

from __future__ import annotations

from collections.abc import Sequence

from grpo_rollout.backends.contract import BackendError, WeightUpdateError
from grpo_rollout.backends.sglang.http import SGLangRefused, SGLangServer


def failures(
    workers: Sequence[SGLangServer], results: Sequence[object]
) -> list[tuple[SGLangServer, BaseException]]:
    """The (worker, error) pairs of an `asyncio.gather(..., return_exceptions=True)` over `workers`."""
    return [(w, r) for w, r in zip(workers, results, strict=True) if isinstance(r, BaseException)]


def failure_kind(failed: Sequence[tuple[SGLangServer, BaseException]]) -> type[Exception]:
    """WeightUpdateError when every failing worker answered and refused, else BackendError."""
    if all(isinstance(error, SGLangRefused) for _, error in failed):
        return WeightUpdateError
    return BackendError


def who(failed: Sequence[tuple[SGLangServer, BaseException]]) -> str:
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    return f"SGLang worker {failed[0][0].url}{more}"
