"""Validation of the weight-sync RPCs (InitWeightSync, UpdateWeightsDistributed), before any engine call.

Why here and so strict: a request the engines cannot honour must be refused before it reaches
them. An engine that joins a broadcast with the wrong shape or dtype corrupts the transfer for
every rank, and one that never joins leaves the learner blocked in its broadcast. Every refusal is
INVALID_ARGUMENT naming the field (and the index, for list fields).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from grpo.v1 import rollout_pb2
from grpo_common.weights.codec import DTYPES

from grpo_rollout.backends.contract import TensorSpec
from grpo_rollout.request_validation import RequestError, invalid

BACKENDS = ("nccl", "gloo")


@dataclass(frozen=True)
class GroupRequest:
    master_address: str
    master_port: int
    group_name: str
    backend: str
    rank_offset: int
    world_size: int


@dataclass(frozen=True)
class Bucket:
    version: int
    group_name: str
    index: int
    last: bool
    names: list[str]
    dtypes: list[str]
    shapes: list[list[int]]

    @property
    def nbytes(self) -> int:
        return sum(
            math.prod(shape) * DTYPES[dtype].itemsize
            for dtype, shape in zip(self.dtypes, self.shapes, strict=True)
        )


def validate_init(request: rollout_pb2.InitWeightSyncRequest, ranks: int) -> GroupRequest:
    """Check an InitWeightSync request against the `ranks` this service's engines take."""
    if not request.master_address.strip():
        raise invalid("master_address is empty: give the learner's address as the engines reach it")
    if not 1 <= request.master_port <= 65535:
        raise invalid(f"master_port must be in 1..65535, got {request.master_port}")
    if not request.group_name:
        raise invalid("group_name is empty (SGLang's default is 'weight_update_group')")
    if request.backend not in BACKENDS:
        raise invalid(f"backend must be one of {list(BACKENDS)}, got {request.backend!r}")
    if request.rank_offset < 1:
        raise invalid(f"rank_offset must be >= 1 (rank 0 is the learner), got {request.rank_offset}")
    if request.world_size < request.rank_offset + ranks:
        raise invalid(
            f"world_size {request.world_size} cannot hold this service's {ranks} rank(s) from rank_offset "
            f"{request.rank_offset}: it must be at least {request.rank_offset + ranks} (1 + the "
            "weight_sync_ranks of every service)"
        )
    return GroupRequest(
        request.master_address,
        request.master_port,
        request.group_name,
        request.backend,
        request.rank_offset,
        request.world_size,
    )


def validate_bucket(
    request: rollout_pb2.DistributedWeightsRequest, specs: Mapping[str, TensorSpec]
) -> Bucket:
    """Check one bucket's metadata; `specs` (name -> shape) are the model's, empty if unknown."""
    if request.policy_version < 0:
        raise invalid(f"policy_version {request.policy_version} is negative; versions start at 0")
    if not request.group_name:
        raise invalid("group_name is empty: give the group passed to InitWeightSync")
    names = list(request.names)
    if not names:
        raise invalid("names is empty: a bucket carries at least one tensor")
    for field, values in (("dtypes", request.dtypes), ("shapes", request.shapes)):
        if len(values) != len(names):
            raise invalid(f"{field} has {len(values)} entries for {len(names)} names; give one per name")
    seen: set[str] = set()
    shapes: list[list[int]] = []
    for i, (name, dtype, shape) in enumerate(zip(names, request.dtypes, request.shapes, strict=True)):
        if not name:
            raise invalid(f"names[{i}] is empty")
        if name in seen:
            raise invalid(f"names[{i}] {name!r} appears twice in the bucket")
        seen.add(name)
        if dtype not in DTYPES:
            known = sorted(DTYPES)
            raise invalid(f"dtypes[{i}] ({name!r}): unknown dtype {dtype!r}; expected one of {known}")
        dims = list(shape.dims)
        if any(d < 0 for d in dims):
            raise invalid(f"shapes[{i}] ({name!r}): dimension {min(dims)} is negative in {dims}")
        if specs:
            spec = specs.get(name)
            if spec is None:
                raise invalid(f"names[{i}] {name!r} is not a parameter of the rollout model")
            if tuple(dims) != tuple(spec.shape):
                raise invalid(
                    f"shapes[{i}] ({name!r}): {dims} does not match the model's {list(spec.shape)}; "
                    "send the full, unsharded tensor"
                )
        shapes.append(dims)
    return Bucket(
        request.policy_version,
        request.group_name,
        request.bucket_index,
        request.last,
        names,
        list(request.dtypes),
        shapes,
    )


__all__ = ["BACKENDS", "Bucket", "GroupRequest", "RequestError", "validate_bucket", "validate_init"]
