"""The CPU thread policy of `grpo train` with local services: how many torch threads each side gets.

`grpo train` with no addresses runs the rollout service on this machine beside the learner (this
process). Whether the two compete for the cores is the rollout service's to say, not something to
guess from the backend's name: its GetInfo reply carries `host_cpu_threads` (wire v1.5), declared by
the backend itself (`GeneratorInfo.host_cpu_threads`): N > 0 when torch runs the model in that
process on this CPU with N threads (hf on the CPU), 0 when it computes elsewhere (a GPU, SGLang's
servers). The launcher starts the rollout service with `rollout_threads` (a backend that runs no
torch here ignores the flag), then sizes the learner from the answer:

    learner = max(1, cores - N)   when the service computes here with N threads
    learner = torch's default     when it computes elsewhere (0)
    learner = max(1, cores - asked)   when it does not say (a service before v1.5): as before v1.5

`train.torch_threads`, applied later by the training loop, still wins. Why a fixed split and not all
cores to each phase when they take turns (`max_staleness = 0`): see the learner README's "CPU
threads" and the measurements it links.
"""

from __future__ import annotations

import logging

import grpc
from grpo.v1 import rollout_pb2, rollout_pb2_grpc

from grpo_learner.config import LocalServicesConfig

logger = logging.getLogger(__name__)

GET_INFO_TIMEOUT_S = 30.0  # a service that has announced its port answers GetInfo at once


def rollout_threads(config: LocalServicesConfig, cores: int) -> int:
    """`--torch-threads` of the rollout service: `local_services.torch_threads`, else half the cores."""
    return config.torch_threads or max(1, cores // 2)


def learner_threads(reported: int | None, asked: int, cores: int) -> int | None:
    """The learner's torch threads beside a rollout service that reported `reported` host CPU threads
    (None: it did not say; `asked`: the threads it was started with); None leaves torch's default."""
    if reported == 0:  # it computes elsewhere: the cores are the learner's
        return None
    taken = asked if reported is None else reported
    return max(1, cores - taken)


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
