"""The learner's CPU threads beside a co-located rollout service: every core to each phase while the
two take turns, a split while they overlap, and what computes where as the service reports it."""

from __future__ import annotations

from grpo_learner.config import LocalServicesConfig
from grpo_learner.local.cpu_threads import learner_threads, phases_take_turns, rollout_threads


def test_phases_take_turns_only_at_staleness_zero_with_passive_waiting():
    assert phases_take_turns(0, {"OMP_WAIT_POLICY": "PASSIVE"})
    assert phases_take_turns(0, {"OMP_WAIT_POLICY": "passive"})
    assert not phases_take_turns(1, {"OMP_WAIT_POLICY": "PASSIVE"})  # generation overlaps training
    assert not phases_take_turns(0, {"OMP_WAIT_POLICY": "ACTIVE"})  # a waiting pool spins on the cores
    assert not phases_take_turns(0, {})


def test_taking_turns_each_side_gets_every_core():
    assert [rollout_threads(LocalServicesConfig(), cores, serial=True) for cores in (16, 2, 1)] == [16, 2, 1]
    assert learner_threads(reported=16, asked=16, cores=16, serial=True) == 16
    assert learner_threads(reported=None, asked=2, cores=2, serial=True) == 2


def test_overlapping_the_rollout_service_gets_half_the_cores_and_the_learner_what_it_leaves():
    assert [rollout_threads(LocalServicesConfig(), cores, serial=False) for cores in (16, 3, 2, 1)] == [
        8,
        1,
        1,
        1,
    ]
    assert learner_threads(reported=8, asked=8, cores=16, serial=False) == 8
    assert learner_threads(reported=6, asked=1, cores=8, serial=False) == 2  # its report wins over the ask
    assert learner_threads(reported=4, asked=4, cores=2, serial=False) == 1  # never below one


def test_a_chosen_rollout_thread_count_wins_under_either_policy():
    for serial in (True, False):
        assert rollout_threads(LocalServicesConfig(torch_threads=6), cores=8, serial=serial) == 6


def test_a_service_computing_elsewhere_leaves_the_learner_all_cores():
    for serial in (True, False):
        assert learner_threads(reported=0, asked=8, cores=16, serial=serial) is None


def test_a_service_that_does_not_say_is_taken_to_compute_here_with_what_it_was_asked():
    assert learner_threads(reported=None, asked=8, cores=16, serial=False) == 8
