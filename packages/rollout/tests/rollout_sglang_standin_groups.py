"""The stand-in's weight-update groups: /init_weights_update_group, /destroy_weights_update_group
and /update_weights_from_distributed.

Two modes (`StandinState.join_groups`):
- recording only (default; in a thread of the test process): /init_weights_update_group answers
  success, /update_weights_from_distributed waits for the test to set `broadcast_done`.
- `--join-groups` (a separate process): it joins the trainer's group exactly as SGLang 0.5.x does
  (`init_custom_process_group`: rendezvous tcp://master:port -> PrefixStore(group_name, TCPStore
  client) -> c10d's process-group helper, at rank rank_offset + tp_rank with tp_rank 0), and an
  update allocates fresh tensors of the given dtypes/shapes, receives the broadcast from rank 0
  into them in `names` order, then records them (`--record-dir`: one safetensors file per bucket,
  the names in order in its metadata) or refuses after receiving, as SGLang does when its
  load_weights fails.

Each endpoint is a function of the stand-in's state and the request payload that returns the
(status, body) to answer, like rollout_sglang_standin_lora.py's.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rollout_sglang_standin import StandinState

Reply = tuple[int, dict[str, Any]]


def _refuse(message: str) -> Reply:
    return 400, {"success": False, "message": message}


def init_custom_process_group(
    backend: str, init_method: str, world_size: int, rank: int, group_name: str, timeout: timedelta
) -> Any:
    """SGLang's `sglang.srt.utils.common.init_custom_process_group` (0.5.4 and 0.5.23), as it calls it.

    rendezvous(init_method) -> TCPStore client (the trainer, rank 0, hosts the store) ->
    PrefixStore(group_name, store) -> `_new_process_group_helper` -> rank map registered.
    """
    import torch.distributed  # noqa: F401 - the c10d module below needs the package initialised
    from torch.distributed.distributed_c10d import (
        Backend,
        PrefixStore,
        _new_process_group_helper,
        _world,
        rendezvous,
    )

    store, rank, world_size = next(rendezvous(init_method, rank, world_size, timeout=timeout))
    store.set_timeout(timeout)
    store = PrefixStore(group_name, store)
    pg, _ = _new_process_group_helper(
        world_size,
        rank,
        [],
        Backend(backend),
        store,
        group_name=group_name,
        backend_options=None,
        timeout=timeout,
        device_id=None,
    )
    _world.pg_group_ranks[pg] = {i: i for i in range(world_size)}
    return pg


def init_group(state: StandinState, payload: dict[str, Any]) -> Reply:
    required = {"master_address", "master_port", "rank_offset", "world_size", "group_name", "backend"}
    if missing := required - set(payload):
        return _refuse(f"missing {sorted(missing)}")
    if not state.join_groups:
        return 200, {"success": True, "message": "ok"}
    name = payload["group_name"]
    if state.tp_size != 1:
        return _refuse("this stand-in joins one rank per process (tp_size 1)")
    if name in state.groups:  # what c10d's helper raises inside SGLang
        return _refuse(
            "Failed to initialize custom process group: The specified group name has already been "
            "created, please use a different group name."
        )
    try:
        state.groups[name] = init_custom_process_group(
            payload["backend"],
            f"tcp://{payload['master_address']}:{payload['master_port']}",
            int(payload["world_size"]),
            int(payload["rank_offset"]),
            name,
            state.pg_timeout,
        )
    except Exception as exc:
        return _refuse(f"Failed to initialize custom process group: {exc}.")
    state.event("joined", group=name, rank=int(payload["rank_offset"]))
    return 200, {"success": True, "message": "Succeeded to initialize custom process group."}


def destroy_group(state: StandinState, payload: dict[str, Any]) -> Reply:
    if not state.join_groups:
        return 200, {"success": True, "message": "ok"}
    pg = state.groups.pop(payload.get("group_name", "weight_update_group"), None)
    if pg is None:
        return _refuse("The group to be destroyed does not exist.")
    import torch.distributed as dist

    dist.destroy_process_group(pg)
    return 200, {"success": True, "message": "Succeeded to destroy custom process group."}


def update_distributed(state: StandinState, payload: dict[str, Any]) -> Reply:
    # Real SGLang answers only after the trainer's broadcast has been received.
    if not {"names", "dtypes", "shapes"} <= set(payload) or "load_format" in payload:
        return _refuse("expected names, dtypes, shapes (and no load_format: SGLang 0.5.4 lacks it)")
    if state.join_groups:
        return _receive_broadcast(state, payload)
    if not state.broadcast_done.wait(timeout=10):
        return 400, {"success": False, "message": "timed out waiting for the broadcast"}
    state.broadcast_done.clear()
    if payload.get("weight_version") is not None:
        state.weight_version = str(payload["weight_version"])
    return 200, {"success": True, "message": "ok"}


def _receive_broadcast(state: StandinState, payload: dict[str, Any]) -> Reply:
    """ModelRunner.update_weights_from_distributed: fresh tensors, async broadcasts, wait all."""
    import torch
    import torch.distributed as dist

    names, name = payload["names"], payload.get("group_name", "weight_update_group")
    state.event("request", names=names, weight_version=payload.get("weight_version"))
    pg = state.groups.get(name)
    if pg is None:
        return _refuse(
            f"Group {name} not in {list(state.groups)}. Please call `init_weights_update_group` first."
        )
    try:
        tensors, handles = [], []
        for dtype, shape in zip(payload["dtypes"], payload["shapes"], strict=True):
            tensor = torch.empty(shape, dtype=getattr(torch, dtype))
            handles.append(dist.broadcast(tensor, src=0, group=pg, async_op=True))
            tensors.append(tensor)
        for handle in handles:
            handle.wait()
    except Exception as exc:
        return _refuse(f"Failed to update parameter online: {exc}.")
    state.event("received", names=names)
    reason, state.reject_distributed = state.reject_distributed, None
    if reason:
        state.event("refused", names=names)
        return _refuse(
            f"Failed to update parameter online: {reason}. The full weights of the ModelRunner are "
            "partially updated. Please discard the whole weights."
        )
    if state.record_dir is not None:
        from safetensors.torch import save_file

        state.buckets_recorded += 1
        file = state.record_dir / f"bucket-{state.buckets_recorded:04d}.safetensors"
        metadata = {"names": json.dumps(names), "weight_version": str(payload.get("weight_version"))}
        save_file(dict(zip(names, tensors, strict=True)), str(file), metadata=metadata)
        state.event("recorded", names=names, file=str(file))
    message = "Succeeded to update parameter online."
    if payload.get("weight_version") is not None:
        state.weight_version = str(payload["weight_version"])
        message += f" Weight version updated to {state.weight_version}."
    return 200, {"success": True, "message": message}
