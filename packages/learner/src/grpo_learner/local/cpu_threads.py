"""The CPU thread policy of `grpo train` with local services: how many torch threads each side gets.

`grpo train` with no addresses runs the rollout service on this machine beside the learner (this
process). Whether the two compete for the cores is the rollout service's to say, not something to
guess from the backend's name: its GetInfo reply carries `host_cpu_threads` (wire v1.5), declared by
the backend itself (`GeneratorInfo.host_cpu_threads`): N > 0 when torch runs the model in that
process on this CPU with N threads (hf on the CPU), 0 when it computes elsewhere (a GPU, SGLang's
servers). And whether they compute at the same time is the run's to say:

- the phases take turns (`serial`: `max_staleness = 0`, or `grpo eval`, whose learner only waits)
  and idle OpenMP threads sleep (`OMP_WAIT_POLICY=PASSIVE`, which `grpo train` / `grpo eval` set):
  each side gets every core, since whichever computes has the box to itself; a fixed split would
  leave a core idle through every phase;
- the phases overlap (`max_staleness >= 1`), or waiting threads spin: the cores are split, the
  rollout service half of them and the learner the rest, so two pools never fight over one core.

The launcher starts the rollout service with `rollout_threads` (`local_services.torch_threads` wins;
a backend that runs no torch here ignores the flag), then sizes the learner from the answer:

    learner = torch's default          when the service computes elsewhere (0)
    learner = cores                    when the phases take turns
    learner = max(1, cores - N)        when they overlap and the service computes here with N
    learner = max(1, cores - asked)    when they overlap and it does not say (before v1.5)

`train.torch_threads`, applied later by the training loop, still wins. The measurements behind the
choice are linked from the learner README ("CPU threads beside local services").
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import grpc
from grpo.v1 import rollout_pb2, rollout_pb2_grpc

from grpo_learner.config import LocalServicesConfig
from grpo_learner.local.openmp_policy import VARIABLE as OMP_WAIT_POLICY

logger = logging.getLogger(__name__)

GET_INFO_TIMEOUT_S = 30.0  # a service that has announced its port answers GetInfo at once


def phases_take_turns(max_staleness: int, environ: Mapping[str, str]) -> bool:
    """Whether the learner and the rollout service never compute at once and idle threads sleep."""
    return max_staleness == 0 and environ.get(OMP_WAIT_POLICY, "").upper() == "PASSIVE"


def rollout_threads(config: LocalServicesConfig, cores: int, serial: bool) -> int:
    """`--torch-threads` of the rollout service: `local_services.torch_threads`, else every core when
    the phases take turns (`serial`), half of them when they overlap."""
    return config.torch_threads or (cores if serial else max(1, cores // 2))


def learner_threads(reported: int | None, asked: int, cores: int, serial: bool) -> int | None:
    """The learner's torch threads beside a rollout service that reported `reported` host CPU threads
    (None: it did not say; `asked`: the threads it was started with); None leaves torch's default."""
    if reported == 0:  # it computes elsewhere: the cores are the learner's
        return None
    if serial:  # the rollout service waits while the learner computes
        return cores
    return max(1, cores - (asked if reported is None else reported))


def reported_host_cpu_threads(address: str) -> int | None:
    """`RolloutInfo.host_cpu_threads` of the rollout service at `address` (plain loopback gRPC, as
    `local_services` starts it); None when unset (a service before v1.5) or GetInfo failed."""
    try:
        with grpc.insecure_channel(address) as channel:
            stub = rollout_pb2_grpc.RolloutServiceStub(channel)
            info = stub.GetInfo(rollout_pb2.GetInfoRequest(), timeout=GET_INFO_TIMEOUT_S)
    except grpc.RpcError as exc:  # e.g. rollout_args turned on auth: keep the split asked for
        logger.warning(
            "GetInfo of the local rollout service failed (%s); assuming it computes on this CPU",
            exc.code().name,  # type: ignore[attr-defined]
        )
        return None
    return info.host_cpu_threads if info.HasField("host_cpu_threads") else None
