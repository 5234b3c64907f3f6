"""Per-token policy versions, run-length encoded (wire v1.4 VersionSpan)."""

from __future__ import annotations

import pytest
from grpo_common.token_versions import (
    TokenVersionsError,
    check_runs,
    encode_runs,
    expand_runs,
    oldest,
    runs_from_switches,
)


def test_runs_round_trip_and_the_oldest_is_the_smallest_version() -> None:
    versions = [3, 3, 4, 4, 4, 3]
    runs = encode_runs(versions)
    assert runs == ((3, 2), (4, 3), (3, 1))
    assert expand_runs(runs) == tuple(versions)
    assert oldest(runs) == 3


def test_a_batch_switch_cuts_each_row_at_its_own_length() -> None:
    switches = [(0, 5), (3, 6), (7, 7)]
    assert runs_from_switches(switches, 10) == ((5, 3), (6, 4), (7, 3))
    assert runs_from_switches(switches, 4) == ((5, 3), (6, 1))
    assert runs_from_switches(switches, 2) == ((5, 2),)  # stopped before the first update
    assert runs_from_switches([(0, 5), (2, 5)], 4) == ((5, 4),)  # an update to the same version


@pytest.mark.parametrize(
    ("runs", "count", "message"),
    [
        (((1, 2),), 3, "cover 2 tokens for 3"),
        (((1, 0), (2, 3)), 3, "holds 0 tokens"),
        (((-1, 3),), 3, "policy_version -1"),
    ],
)
def test_runs_that_do_not_describe_the_tokens_are_refused(runs, count, message) -> None:
    with pytest.raises(TokenVersionsError, match=message):
        check_runs(runs, count)
