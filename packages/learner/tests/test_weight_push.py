"""Weight push to real grpc.aio servers that decode and record what they receive."""

from __future__ import annotations

import asyncio
import gc
import socket
import weakref

import pytest
import torch
from grpo_learner.config import RolloutConfig
from grpo_learner.weight_sync import grpc_pusher
from grpo_learner.weight_sync.grpc_pusher import WeightPusher
from learner_fixtures import tiny_qwen2
from pool_rollout import wait_until
from recording_rollout import RecordingRollout, start_recording_rollout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_push_reaches_every_service_with_identical_tensors_and_version():
    async def scenario():
        model = tiny_qwen2()
        services = [RecordingRollout(), RecordingRollout()]
        servers = [await start_recording_rollout(s) for s in services]
        pusher = WeightPusher([s.address for s in servers], bucket_bytes=4096, deadline_s=10)
        try:
            behind = await pusher.push(model.state_dict(), policy_version=1)
            with torch.no_grad():
                next(model.parameters()).add_(1.0)
            behind2 = await pusher.push(model.state_dict(), policy_version=2)
            pushed_bytes = pusher.metrics()["push/bytes"]
        finally:
            await pusher.close()
            for server in servers:
                await server.stop(0)
        return model, services, behind, behind2, pushed_bytes

    model, services, behind, behind2, pushed_bytes = asyncio.run(scenario())
    assert behind == [] and behind2 == []
    expected = model.state_dict()
    # tied: lm_head.weight is model.embed_tokens.weight, sent once (the receiver's model ties them too)
    assert expected["lm_head.weight"].data_ptr() == expected["model.embed_tokens.weight"].data_ptr()
    for service in services:
        assert [version for version, _ in service.updates] == [1, 2]
        _, tensors = service.updates[-1]
        assert tensors.keys() == expected.keys() - {"lm_head.weight"}
        assert all(torch.equal(tensors[k], expected[k]) for k in tensors)
    unique_bytes = sum(t.nbytes for k, t in expected.items() if k != "lm_head.weight")
    assert pushed_bytes == 4 * unique_bytes  # push/bytes of two pushes to two services, each tensor once


def test_push_casts_to_the_requested_dtype():
    async def scenario():
        service = RecordingRollout()
        server = await start_recording_rollout(service)
        pusher = WeightPusher([server.address], dtype=torch.bfloat16, deadline_s=10)
        try:
            await pusher.push({"w": torch.ones(3), "step": torch.tensor(4)}, 1)
        finally:
            await pusher.close()
            await server.stop(0)
        return service

    ((_, tensors),) = asyncio.run(scenario()).updates
    assert tensors["w"].dtype == torch.bfloat16 and tensors["step"].dtype == torch.int64


def test_failed_push_is_retried_with_backoff():
    async def scenario():
        service = RecordingRollout(fail_next_updates=2)
        server = await start_recording_rollout(service)
        pusher = WeightPusher([server.address], deadline_s=10, initial_backoff_s=0.05)
        try:
            behind = await pusher.push({"w": torch.arange(6.0)}, 1)
        finally:
            await pusher.close()
            await server.stop(0)
        return service, behind

    service, behind = asyncio.run(scenario())
    assert behind == [] and [v for v, _ in service.updates] == [1]


def test_dead_service_does_not_block_beyond_deadline_and_gets_current_weights_when_back():
    async def scenario():
        live = RecordingRollout()
        live_server = await start_recording_rollout(live)
        dead_port = free_port()
        dead_address = f"127.0.0.1:{dead_port}"
        # No health probes here: a dead service that nobody marked DOWN holds a push for at most
        # the deadline (with probes it is not waited for at all: test_rollout_pool).
        pusher = WeightPusher(
            [live_server.address, dead_address],
            deadline_s=1.0,
            initial_backoff_s=0.05,
            max_retry_backoff_s=0.2,
            pool_settings=RolloutConfig(probe_interval_s=0),
        )
        loop = asyncio.get_running_loop()
        try:
            start = loop.time()
            behind = await pusher.push({"w": torch.zeros(4)}, 1)
            waited = loop.time() - start
            behind_v2 = await pusher.push({"w": torch.full((4,), 2.0)}, 2)
            # The service comes back: it must receive version 2 only, never the missed version 1.
            revived = RecordingRollout()
            revived_server = await start_recording_rollout(revived, port=dead_port)
            for _ in range(200):
                if revived.updates:
                    break
                await asyncio.sleep(0.05)
            statuses = {s.address: s.acked_version for s in pusher.statuses}
            await revived_server.stop(0)
        finally:
            await pusher.close()
            await live_server.stop(0)
        return live, revived, behind, behind_v2, waited, statuses, dead_address

    live, revived, behind, behind_v2, waited, statuses, dead_address = asyncio.run(scenario())
    assert [s.address for s in behind] == [dead_address] and [s.address for s in behind_v2] == [dead_address]
    # It waited out the deadline for the dead service and returned: a push that waited for it would
    # never return (only a hang reaches the upper bound, far above the 1 s deadline on a busy box).
    assert 0.9 < waited < 60
    assert [v for v, _ in live.updates] == [1, 2]
    assert [v for v, _ in revived.updates] == [2]
    assert torch.equal(revived.updates[0][1]["w"], torch.full((4,), 2.0))
    assert statuses[dead_address] == 2


def test_the_push_deadline_grows_with_the_bytes_sent():
    """deadline_s + bytes / min_bytes_per_s, for the wait and for each UpdateWeights RPC: a fixed
    deadline cut every push of a model too big to send within it, and retried it forever."""

    async def deadlines() -> tuple[float, float]:
        scaled, fixed = WeightPusher([], deadline_s=10, min_bytes_per_s=1e6), WeightPusher([], deadline_s=10)
        try:
            return scaled._deadline_for(2_000_000), fixed._deadline_for(2_000_000)
        finally:
            await scaled.close()
            await fixed.close()

    assert asyncio.run(deadlines()) == (pytest.approx(12.0), 10)


def unique_bytes(weights: dict[str, torch.Tensor]) -> int:
    """The bytes of one snapshot: each tensor once (the tied lm_head is not sent)."""
    return sum(t.nbytes for k, t in weights.items() if k != "lm_head.weight")


class SnapshotTensors:
    """Weak references to every tensor the pusher's snapshots are made of, to count what is still alive
    (anything holding one keeps it: the pusher's record, a worker's local variable, a stream)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.taken: list[weakref.ref] = []
        take = grpc_pusher.snapshot_state_dict

        def recorded(*args, **kwargs):
            tensors = take(*args, **kwargs)
            self.taken += [weakref.ref(t) for t in tensors.values()]
            return tensors

        monkeypatch.setattr(grpc_pusher, "snapshot_state_dict", recorded)

    def alive_bytes(self) -> int:
        gc.collect()
        return sum(t.nbytes for ref in self.taken if (t := ref()) is not None)


@pytest.mark.parametrize("delta", [False, True])
def test_the_pusher_holds_a_snapshot_between_pushes_only_for_delta_pushes(delta: bool, monkeypatch):
    """Without push.delta nothing of a version is kept once every service has it (the live weights
    are read again if one joins); with it, the one snapshot the next push is diffed against."""
    snapshots = SnapshotTensors(monkeypatch)

    async def scenario() -> list[tuple[int, int]]:
        model = tiny_qwen2()
        service = RecordingRollout()
        server = await start_recording_rollout(service)
        pusher = WeightPusher([server.address], deadline_s=10, delta=delta)
        held = []
        try:
            for version in (1, 2, 3):
                assert await pusher.push(model.state_dict(), version) == []
                held.append((pusher.held_bytes, snapshots.alive_bytes()))
                await pusher.weights_will_change()
                held.append((pusher.held_bytes, snapshots.alive_bytes()))
                with torch.no_grad():
                    next(model.parameters()).add_(1.0)
        finally:
            await pusher.close()
            await server.stop(0)
        assert [v for v, _ in service.updates] == [1, 2, 3]
        return held

    held = asyncio.run(scenario())
    snapshot = unique_bytes(tiny_qwen2().state_dict()) if delta else 0
    assert held == [(snapshot, snapshot)] * 6


def test_a_service_that_joins_between_pushes_gets_the_weights_read_again_or_the_next_push():
    """Before the weights change, a joining service gets the pushed version re-taken from them (the
    same bits); once they changed, it waits for the next push; a service still behind when they
    change keeps a snapshot to be sent during the update, freed once it has it."""

    async def scenario():
        model = tiny_qwen2()
        first, early, late = RecordingRollout(), RecordingRollout(), RecordingRollout()
        first_server = await start_recording_rollout(first)
        early_server = await start_recording_rollout(early)
        late_server = await start_recording_rollout(late)
        dead_port = free_port()
        pusher = WeightPusher(
            [first_server.address],
            deadline_s=0.5,
            initial_backoff_s=0.05,
            max_retry_backoff_s=0.1,
            pool_settings=RolloutConfig(probe_interval_s=0),
        )
        pushed = {}
        held = {}
        try:
            await pusher.push(model.state_dict(), 1)
            pushed[1] = {k: t.clone() for k, t in model.state_dict().items()}
            held["v1 pushed"] = pusher.held_bytes
            pusher.pool.add(early_server.address)  # joins before the weights change
            await wait_until(lambda: early.updates, 60, "the early joiner's weights")
            # freed once the joiner has it (the service records the weights before its reply reaches
            # the pusher, so this waits for the reply; never freed: the wait fails)
            await wait_until(lambda: pusher.held_bytes == 0, 60, "the re-taken copy freed")
            await pusher.weights_will_change()
            with torch.no_grad():
                next(model.parameters()).add_(1.0)
            pusher.pool.add(late_server.address)  # joins while no copy of v1 exists
            await asyncio.sleep(0.3)
            late_before_v2 = list(late.updates)
            pusher.pool.add(f"127.0.0.1:{dead_port}")  # will be behind when the weights change
            await pusher.push(model.state_dict(), 2)
            pushed[2] = {k: t.clone() for k, t in model.state_dict().items()}
            held["v2 pushed, one behind"] = pusher.held_bytes
            await pusher.weights_will_change()
            held["v2, weights change, one behind"] = pusher.held_bytes
            with torch.no_grad():
                next(model.parameters()).add_(1.0)
            revived = RecordingRollout()
            revived_server = await start_recording_rollout(revived, port=dead_port)
            await wait_until(lambda: revived.updates, 60, "the revived service's weights")
            await wait_until(lambda: pusher.held_bytes == 0, 60, "the snapshot freed")
            await revived_server.stop(0)
        finally:
            await pusher.close()
            for server in (first_server, early_server, late_server):
                await server.stop(0)
        return pushed, held, early, late, late_before_v2, revived

    pushed, held, early, late, late_before_v2, revived = asyncio.run(scenario())
    snapshot = unique_bytes(pushed[1])
    assert held == {
        "v1 pushed": 0,
        "v2 pushed, one behind": snapshot,
        "v2, weights change, one behind": snapshot,
    }
    assert [v for v, _ in early.updates] == [1, 2]
    assert all(torch.equal(t, pushed[1][k]) for k, t in early.updates[0][1].items())
    assert late_before_v2 == [] and [v for v, _ in late.updates] == [2]
    ((version, tensors),) = revived.updates  # sent v2 as pushed, not the weights changed since
    assert version == 2 and all(torch.equal(tensors[k], pushed[2][k]) for k in tensors)
