"""The policy version of every token of a completion, run-length encoded (wire v1.4 `VersionSpan`).

Why: with partial rollouts a completion that was in flight when new weights arrived continues under
them, so its tokens come from several versions. One (version, tokens) pair per run keeps the wire
small (almost every completion is one run, a few are two) while the learner can still expand it to
one version per token. Both ends convert here, so the encoding is written once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

VersionRuns = tuple[tuple[int, int], ...]  # ((policy_version, tokens), ...), in token order


class TokenVersionsError(ValueError):
    """Runs that do not describe the completion's tokens; the message says what is wrong."""


def encode_runs(versions: Iterable[int]) -> VersionRuns:
    """[v, v, w, w, w] -> ((v, 2), (w, 3))."""
    runs: list[list[int]] = []
    for version in versions:
        if runs and runs[-1][0] == version:
            runs[-1][1] += 1
        else:
            runs.append([version, 1])
    return tuple((v, n) for v, n in runs)


def expand_runs(runs: VersionRuns) -> tuple[int, ...]:
    """((v, 2), (w, 3)) -> (v, v, w, w, w)."""
    return tuple(version for version, tokens in runs for _ in range(tokens))


def oldest(runs: VersionRuns) -> int:
    return min(version for version, _ in runs)


def check_runs(runs: VersionRuns, token_count: int) -> None:
    """Raise TokenVersionsError unless the runs cover exactly `token_count` tokens with versions >= 0."""
    for version, tokens in runs:
        if tokens <= 0:
            raise TokenVersionsError(f"a token_versions span holds {tokens} tokens; each needs > 0")
        if version < 0:
            raise TokenVersionsError(f"a token_versions span has policy_version {version}; versions are >= 0")
    covered = sum(tokens for _, tokens in runs)
    if covered != token_count:
        raise TokenVersionsError(
            f"token_versions spans cover {covered} tokens for {token_count} token_ids; "
            "they must cover each once"
        )


def runs_from_switches(switches: Sequence[tuple[int, int]], length: int) -> VersionRuns:
    """The runs of a sequence of `length` tokens in a batch whose version changed at these steps:
    `switches` = ((first step, version), ...) in step order, the first at step 0."""
    runs = []
    for index, (start, version) in enumerate(switches):
        end = switches[index + 1][0] if index + 1 < len(switches) else length
        end = min(end, length)
        if end > start:
            runs.append((version, end - start))
    return encode_runs(expand_runs(tuple(runs)))  # merge equal neighbours (an update to the same version)
