"""The learner's (rank 0's) side of SGLang's weight-update group, built the way SGLang builds its side.

SGLang's engines join with `init_custom_process_group` (sglang/srt/utils/common.py, 0.5.x):
rendezvous `tcp://master_address:master_port` (a TCPStore client; rank 0 hosts the store) ->
`PrefixStore(group_name, store)` -> torch's `_new_process_group_helper(world_size, rank, [], backend,
store, group_name=...)`, which adds its own `"{group_name}/"` and `"{device}/"` prefixes -> the rank
map registered in `_world.pg_group_ranks`. The trainer must do the same, or the store keys never
meet and the rendezvous hangs; `torch.distributed.init_process_group` would also claim the
learner's default group, which torchrun/FSDP already own. Here: host the TCPStore (`open_store`,
which can pick a free port before anyone joins), then the same PrefixStore and helper
(`join_group`), then `broadcast` from rank 0 with the same async-broadcast-then-wait pattern the
engines use to receive.

`_new_process_group_helper` is private to torch: it is what SGLang itself calls, so the two sides
stay matched as long as both run a torch that has it (2.6+: `backend_options`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.distributed.distributed_c10d import Backend, PrefixStore, _new_process_group_helper, _world


def open_store(master_address: str, master_port: int, world_size: int, timeout_s: float) -> dist.TCPStore:
    """Host the group's TCP store on this process (rank 0); `master_port` 0 picks a free port (`.port`).

    Returns at once: the engines connect to it while `join_group` runs.
    """
    return dist.TCPStore(
        master_address,
        master_port,
        world_size,
        is_master=True,
        timeout=timedelta(seconds=timeout_s),
        wait_for_workers=False,
    )


def name_in_use(group_name: str) -> bool:
    """Whether this process still has a group of that name (c10d refuses a second one)."""
    return group_name in _world.pg_names.values()


def join_group(
    store: dist.Store, world_size: int, group_name: str, backend: str, timeout_s: float
) -> dist.ProcessGroup:
    """Form the group as rank 0; blocks until every engine rank has joined (or the timeout)."""
    if name_in_use(group_name):
        raise RuntimeError(
            f"a process group named {group_name!r} already exists in this process (an earlier weight "
            "sync that was not closed, or one stuck in a broadcast); close it first or pick another name"
        )
    timeout = timedelta(seconds=timeout_s)
    pg, _ = _new_process_group_helper(
        world_size,
        0,
        [],
        Backend(backend),
        PrefixStore(group_name, store),
        group_name=group_name,
        backend_options=None,
        timeout=timeout,
        device_id=None,
    )
    _world.pg_group_ranks[pg] = {i: i for i in range(world_size)}
    return pg


def broadcast(group: dist.ProcessGroup, tensors: Sequence[torch.Tensor]) -> None:
    """Send `tensors` from rank 0 in order; returns once they are sent (GPU work included)."""
    handles = [dist.broadcast(tensor, src=0, group=group, async_op=True) for tensor in tensors]
    for handle in handles:
        handle.wait()
    if any(tensor.is_cuda for tensor in tensors):
        torch.cuda.synchronize()


def destroy(group: dist.ProcessGroup) -> None:
    dist.destroy_process_group(group)
