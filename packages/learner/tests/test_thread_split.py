"""Co-located services on the CPU split the cores with the learner instead of each taking all of them."""

from __future__ import annotations

from grpo_learner.config import LocalServicesConfig
from grpo_learner.service_processes import ThreadSplit, cpu_thread_split


def test_an_hf_rollout_on_the_cpu_gets_half_the_cores_and_the_learner_the_rest() -> None:
    assert cpu_thread_split(LocalServicesConfig(), cores=16) == ThreadSplit(rollout=8, learner=8)
    assert cpu_thread_split(LocalServicesConfig(), cores=3) == ThreadSplit(rollout=1, learner=2)
    assert cpu_thread_split(LocalServicesConfig(), cores=1) == ThreadSplit(rollout=1, learner=1)


def test_a_chosen_rollout_thread_count_is_kept_and_the_learner_takes_what_is_left() -> None:
    config = LocalServicesConfig(torch_threads=6)
    assert cpu_thread_split(config, cores=8) == ThreadSplit(rollout=6, learner=2)


def test_a_rollout_on_a_gpu_or_sglang_leaves_the_threads_alone() -> None:
    assert cpu_thread_split(LocalServicesConfig(device="cuda"), cores=16) == ThreadSplit(None, None)
    assert cpu_thread_split(LocalServicesConfig(generator="sglang"), cores=16) == ThreadSplit(None, None)
    gpu_with_threads = LocalServicesConfig(device="cuda", torch_threads=2)
    assert cpu_thread_split(gpu_with_threads, cores=16) == ThreadSplit(rollout=2, learner=None)
