"""Running every service on this machine: `grpo train` (and `grpo eval`) with no service address.

service_processes  the reward and rollout services as child processes on free loopback ports
cpu_threads        how many torch threads the learner and a local rollout service each get
openmp_policy      OpenMP threads that sleep when idle, for processes taking turns on the cores
"""
