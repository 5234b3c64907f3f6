"""The learner's CPU threads beside a co-located rollout service: taken from what the service reports."""

from __future__ import annotations

from grpo_learner.config import LocalServicesConfig
from grpo_learner.local.cpu_threads import learner_threads, rollout_threads


def test_the_rollout_service_is_started_with_half_the_cores_unless_told():
    assert [rollout_threads(LocalServicesConfig(), cores) for cores in (16, 3, 2, 1)] == [8, 1, 1, 1]
    assert rollout_threads(LocalServicesConfig(torch_threads=6), cores=8) == 6


def test_the_learner_takes_the_cores_a_service_computing_here_leaves():
    assert learner_threads(reported=8, asked=8, cores=16) == 8
    assert learner_threads(reported=6, asked=1, cores=8) == 2  # what it reports wins over what was asked
    assert learner_threads(reported=4, asked=4, cores=2) == 1  # never below one


def test_a_service_computing_elsewhere_leaves_the_learner_all_cores():
    assert learner_threads(reported=0, asked=8, cores=16) is None


def test_a_service_that_does_not_say_is_taken_to_compute_here_with_what_it_was_asked():
    assert learner_threads(reported=None, asked=8, cores=16) == 8
