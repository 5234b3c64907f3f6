"""Many rollout services: load spreading, health, weights before prompts, hot-add and removal.

Every service is a real grpc.aio server on loopback (`pool_rollout.PoolRollout`); the client, the
pusher and the pool talk to them through real channels, health checks and GetInfo calls.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
import torch
from grpo_common.addresses import AddressError, parse_address
from grpo_learner.config import RolloutConfig, SamplingConfig
from grpo_learner.data.prompts import PromptItem
from grpo_learner.rollouts.address_book import parse_address_lines, write_addresses_atomically
from grpo_learner.rollouts.client import RolloutClient
from grpo_learner.rollouts.load_spread import water_fill
from grpo_learner.rollouts.pool import MemberState, RolloutPool
from grpo_learner.weight_sync.grpc_pusher import WeightPusher
from pool_rollout import PoolRollout, start, wait_until

# Fast probes so that a test sees a state change within a few hundred milliseconds.
FAST = RolloutConfig(probe_interval_s=0.05, probe_timeout_s=0.3, unhealthy_after=2, addresses_poll_s=0.05)
WEIGHTS = {"w": torch.arange(4.0)}
HANG_S = 3600.0  # past pytest's 600 s timeout: a test that waits for it fails as a hang


@pytest.fixture
def unused_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def prompts(prefix: str, count: int) -> list[PromptItem]:
    return [PromptItem(id=f"{prefix}{i}", reference=str(i), token_ids=(1, 2, i + 3)) for i in range(count)]


def client_for(pool: RolloutPool, **kwargs) -> RolloutClient:
    retries = RolloutConfig(
        backoff_s=0.02,
        max_backoff_s=0.1,
        max_attempts=kwargs.pop("max_attempts", 20),
        request_timeout_s=kwargs.pop("request_timeout_s", 10),
    )
    return RolloutClient(
        pool,
        retries,
        group_size=2,
        sampling=SamplingConfig(max_new_tokens=8),
        apply_chat_template=True,
        **kwargs,
    )


async def collect(client: RolloutClient, items: list[PromptItem], min_version: int = 0) -> list[str]:
    return [g.prompt_id async for g in client.generate(items, min_policy_version=min_version)]


def sent_to(service: PoolRollout) -> set[str]:
    return {i for ids in service.generate_events() for i in ids}


def state(pool: RolloutPool, address: str) -> MemberState | None:
    member = pool.get(address)
    return member.state if member is not None else None


# --- load spreading ---------------------------------------------------------------------------


def test_water_fill_raises_the_least_loaded_services_first():
    assert water_fill({"a": 4, "b": 0}, 10) == {"a": 3, "b": 7}
    assert water_fill({"a": 30, "b": 0}, 10) == {"b": 10}
    assert water_fill({"a": 0, "b": 0, "c": 0}, 7, ["c", "a", "b"]) == {"c": 3, "a": 2, "b": 2}
    assert water_fill({"a": 1, "b": 0}, 0) == {}
    with pytest.raises(ValueError, match="order"):
        water_fill({"a": 0}, 1, ["b"])


def test_a_service_busy_with_other_work_gets_fewer_prompts():
    async def scenario():
        busy, idle = PoolRollout(busy=30), PoolRollout()
        servers = [await start(busy), await start(idle)]
        pool = RolloutPool([s.address for s in servers], settings=FAST)
        client = client_for(pool)
        try:
            await wait_until(lambda: all(m.info_at > 0 for m in pool.members), what="first load probes")
            first = await collect(client, prompts("a", 10))
            busy.busy = 4  # now only slightly busy: water-filling tops both up to the same level
            await wait_until(lambda: pool.get(servers[0].address).reported_in_flight == 4, what="new load")
            second = await collect(client, prompts("b", 10))
        finally:
            await client.close()
            for server in servers:
                await server.stop(0)
        return busy, idle, first, second

    busy, idle, first, second = asyncio.run(scenario())
    assert sorted(first) == sorted(p.id for p in prompts("a", 10))
    assert len(second) == 10
    assert [len(ids) for ids in busy.generate_events()] == [3]  # nothing while it was very busy
    assert [len(ids) for ids in idle.generate_events()] == [10, 7]


def test_prompts_this_learner_still_has_out_count_as_load():
    async def scenario():
        slow, fast = PoolRollout(group_delay_s=0.25), PoolRollout()
        servers = [await start(slow), await start(fast)]
        # No background probes: the client asks GetInfo itself before assigning.
        pool = RolloutPool([s.address for s in servers], settings=RolloutConfig(probe_interval_s=0))
        client = client_for(pool)
        try:
            first = asyncio.create_task(collect(client, prompts("a", 8)))
            await wait_until(lambda: len(fast.requests) == 1 and fast.in_flight == 0, what="fast share done")
            outstanding = pool.get(servers[0].address).outstanding
            second = await collect(client, prompts("b", 8))
            await first
        finally:
            await client.close()
            for server in servers:
                await server.stop(0)
        return slow, fast, outstanding, second

    slow, fast, outstanding, second = asyncio.run(scenario())
    assert outstanding == 4  # the slow service still owes all of its first share
    assert len(second) == 8
    # loads slow=4 (ours, still running), fast=0: 8 new prompts fill both up to 6
    assert [len(ids) for ids in slow.generate_events()] == [4, 2]
    assert [len(ids) for ids in fast.generate_events()] == [4, 6]


# --- health ------------------------------------------------------------------------------------


def test_a_frozen_service_is_marked_down_and_its_prompts_come_back_from_another():
    async def scenario():
        frozen, healthy = PoolRollout(freeze_on_generate=True), PoolRollout()
        servers = [await start(frozen), await start(healthy)]
        pool = RolloutPool([s.address for s in servers], settings=FAST)
        # a request deadline only a hang reaches: only the monitor can give the frozen share back
        client = client_for(pool, request_timeout_s=HANG_S)
        try:
            first = await collect(client, prompts("a", 10))
            down = state(pool, servers[0].address)
            second = await collect(client, prompts("b", 6))
        finally:
            await client.close()
            for server in servers:
                await server.stop(0)
        return frozen, healthy, first, second, down

    frozen, healthy, first, second, down = asyncio.run(scenario())
    assert sorted(first) == sorted(p.id for p in prompts("a", 10))
    assert down is MemberState.DOWN
    (frozen_share,) = frozen.generate_events()  # one request, then nothing more
    assert len(frozen_share) == 5 and set(frozen_share) <= sent_to(healthy)  # re-sent to the other
    assert sorted(second) == sorted(p.id for p in prompts("b", 6))
    assert set(second) <= sent_to(healthy)


def test_a_service_that_dies_gets_no_prompts_and_when_back_gets_weights_before_prompts():
    async def scenario():
        first_life, other = PoolRollout(), PoolRollout()
        server, other_server = await start(first_life), await start(other)
        address, port = server.address, server.port
        pool = RolloutPool([address, other_server.address], settings=FAST)
        pusher = WeightPusher(pool, deadline_s=5, initial_backoff_s=0.02)
        client = client_for(pool)
        second_life = PoolRollout(update_delay_s=0.3)  # answers probes long before it has weights
        try:
            assert await pusher.push(WEIGHTS, 1) == []
            await server.stop(0)
            await wait_until(lambda: state(pool, address) is MemberState.DOWN, what="DOWN")
            counts = pool.metrics()
            while_down = await collect(client, prompts("a", 6), min_version=1)
            behind = await pusher.push(WEIGHTS, 2)  # does not wait for the DOWN service
            # It restarts on its start-up weights (version 0) at the same address.
            server = await start(second_life, port=port)
            await wait_until(lambda: state(pool, address) is MemberState.READY, what="READY again")
            back = await collect(client, prompts("b", 10), min_version=2)
        finally:
            await client.close()
            await pusher.close()
            await server.stop(0)
            await other_server.stop(0)
        return first_life, second_life, other, while_down, behind, back, address, counts

    first_life, second_life, other, while_down, behind, back, address, counts = asyncio.run(scenario())
    assert counts == {
        "rollout/services_pending": 0.0,
        "rollout/services_ready": 1.0,
        "rollout/services_down": 1.0,
        "rollout/services_draining": 0.0,
    }
    assert first_life.generate_events() == [] and set(while_down) <= sent_to(other)
    assert [s.address for s in behind] == [address]
    assert second_life.events[0] == ("update", 2)  # the current weights first, no backlog ...
    assert [kind for kind, _ in second_life.events[1:]] == ["generate"]  # ... then prompts
    assert sorted(back) == sorted(p.id for p in prompts("b", 10))
    assert len(second_life.generate_events()[0]) == 5  # an equal share again


def test_a_quick_restart_is_noticed_by_its_version_and_resynced_before_prompts():
    async def scenario():
        first_life = PoolRollout()
        server = await start(first_life)
        port = server.port
        # Never DOWN here: only the version it reports can tell that it restarted.
        pool = RolloutPool([server.address], settings=FAST.model_copy(update={"unhealthy_after": 1000}))
        pusher = WeightPusher(pool, deadline_s=5, initial_backoff_s=0.02)
        client = client_for(pool)
        second_life = PoolRollout()
        try:
            assert await pusher.push(WEIGHTS, 3) == []
            await server.stop(0)
            server = await start(second_life, port=port)  # back before any probe failed twice
            await wait_until(lambda: second_life.update_versions() == [3], what="resync")
            groups = await collect(client, prompts("a", 4), min_version=3)
        finally:
            await client.close()
            await pusher.close()
            await server.stop(0)
        return second_life, groups

    second_life, groups = asyncio.run(scenario())
    assert len(groups) == 4
    assert [kind for kind, _ in second_life.events] == ["update", "generate"]


def test_push_does_not_wait_for_a_service_the_monitor_found_down(unused_address):
    async def scenario():
        live = PoolRollout()
        server = await start(live)
        pool = RolloutPool([server.address, unused_address], settings=FAST)
        pusher = WeightPusher(pool, deadline_s=HANG_S)  # waiting for the down service would be a hang
        try:
            await wait_until(lambda: state(pool, unused_address) is MemberState.DOWN, what="DOWN")
            behind = await pusher.push(WEIGHTS, 1)
        finally:
            await pusher.close()
            await server.stop(0)
        return live, behind

    live, behind = asyncio.run(scenario())
    assert [s.address for s in behind] == [unused_address]
    assert live.update_versions() == [1]


# --- the addresses file ------------------------------------------------------------------------


def test_a_service_added_to_the_file_gets_weights_then_prompts(tmp_path):
    async def scenario():
        original, added = PoolRollout(), PoolRollout(update_delay_s=0.3)  # healthy long before it has weights
        servers = [await start(original), await start(added)]
        listing = tmp_path / "rollouts.txt"
        write_addresses_atomically(listing, [servers[0].address])
        pool = RolloutPool([], settings=FAST.model_copy(update={"addresses_file": listing}))
        pusher = WeightPusher(pool, deadline_s=5, initial_backoff_s=0.02)
        client = client_for(pool)
        try:
            assert pool.addresses == [servers[0].address]
            await pusher.push(WEIGHTS, 1)
            write_addresses_atomically(listing, [servers[0].address, servers[1].address])
            await wait_until(lambda: state(pool, servers[1].address) is MemberState.READY, what="joined")
            # min_version 0 (a staleness window would allow old weights): only the pool's gate
            # keeps prompts away from it until its weights have landed.
            groups = await collect(client, prompts("a", 10), min_version=0)
        finally:
            await client.close()
            await pusher.close()
            for server in servers:
                await server.stop(0)
        return added, groups

    added, groups = asyncio.run(scenario())
    assert len(groups) == 10
    assert added.events[0] == ("update", 1)
    assert [kind for kind, _ in added.events[1:]] == ["generate"] and len(added.generate_events()[0]) == 5


def test_a_service_removed_from_the_file_drains_then_leaves(tmp_path):
    async def scenario():
        staying, leaving = PoolRollout(), PoolRollout(group_delay_s=0.1)
        servers = [await start(staying), await start(leaving)]
        listing = tmp_path / "rollouts.txt"
        write_addresses_atomically(listing, [s.address for s in servers])
        pool = RolloutPool([], settings=FAST.model_copy(update={"addresses_file": listing}))
        pusher = WeightPusher(pool, deadline_s=5)
        client = client_for(pool)
        leaving_address = servers[1].address
        try:
            call = asyncio.create_task(collect(client, prompts("a", 10)))
            await wait_until(lambda: leaving.in_flight > 0, what="a stream to the leaving service")
            write_addresses_atomically(listing, [servers[0].address])
            await wait_until(lambda: state(pool, leaving_address) is not MemberState.READY, what="draining")
            drained_state = state(pool, leaving_address)
            first = await call
            await wait_until(lambda: pool.get(leaving_address) is None, what="left the pool")
            await pusher.push(WEIGHTS, 1)
            second = await collect(client, prompts("b", 4))
        finally:
            await client.close()
            await pusher.close()
            for server in servers:
                await server.stop(0)
        return staying, leaving, drained_state, first, second

    staying, leaving, drained_state, first, second = asyncio.run(scenario())
    assert drained_state is MemberState.DRAINING
    assert sorted(first) == sorted(p.id for p in prompts("a", 10))
    (share,) = leaving.generate_events()
    assert len(share) == 5 and not set(share) & sent_to(staying)  # it finished its own prompts
    assert leaving.update_versions() == [] and staying.update_versions() == [1]
    assert set(second) <= sent_to(staying) and len(second) == 4


def test_bad_lines_in_the_file_are_logged_and_ignored(tmp_path, caplog):
    async def scenario():
        good = PoolRollout()
        server = await start(good)
        listing = tmp_path / "rollouts.txt"
        listing.write_text(f"# rollout services\nlocalhost\n{server.address}  # the good one\nhttp://a:1\n")
        pool = RolloutPool([], settings=FAST.model_copy(update={"addresses_file": listing}))
        pool.start()
        try:
            first = pool.addresses
            listing.write_text(f"{server.address}\nhost:99999\n[::1:50\n\nhost:port\n")
            await wait_until(lambda: "host:99999" in caplog.text, what="the re-read")
            await asyncio.sleep(0.2)  # more polls: the unchanged file is not re-read or re-logged
            second = pool.addresses
        finally:
            await pool.close()
            await server.stop(0)
        return server.address, first, second

    with caplog.at_level(logging.WARNING, logger="grpo_learner.rollouts.address_book"):
        address, first, second = asyncio.run(scenario())
    assert first == [address] and second == [address]
    assert "line 2: 'localhost' has no ':port'; line ignored" in caplog.text
    assert "line 4: 'http://a:1' has a URL scheme" in caplog.text
    assert "line 2: 'host:99999': port '99999' is not a number in 1..65535" in caplog.text
    assert "line 3: '[::1:50'" in caplog.text and "line 5: 'host:port'" in caplog.text
    assert caplog.text.count("host:99999") == 1


def test_a_missing_addresses_file_keeps_the_current_services(tmp_path, caplog):
    async def scenario():
        listing = tmp_path / "rollouts.txt"
        write_addresses_atomically(listing, ["127.0.0.1:1", "127.0.0.1:2"])
        settings = RolloutConfig(probe_interval_s=0, addresses_poll_s=0.02, addresses_file=listing)
        pool = RolloutPool([], settings=settings)
        pool.start()
        try:
            listing.unlink()
            await asyncio.sleep(0.2)
            kept = pool.addresses
            write_addresses_atomically(listing, ["127.0.0.1:2"])
            await wait_until(lambda: state(pool, "127.0.0.1:1") is None, what="removal")
            return kept, pool.addresses
        finally:
            await pool.close()

    with caplog.at_level(logging.WARNING, logger="grpo_learner.rollouts.address_book"):
        kept, after = asyncio.run(scenario())
    assert kept == ["127.0.0.1:1", "127.0.0.1:2"] and after == ["127.0.0.1:2"]
    assert caplog.text.count("cannot be read") == 1


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("host", "no ':port'"),
        (":80", "no host"),
        ("host:0", "not a number in 1..65535"),
        ("host:http", "not a number"),
        ("grpc://host:1", "URL scheme"),
        ("a b:1", "spaces"),
        ("::1:80", "brackets"),
        ("[::1:80", "brackets"),
    ],
)
def test_parse_address_names_the_problem(text, problem):
    with pytest.raises(AddressError, match=problem):
        parse_address(text)


def test_parse_address_accepts_hosts_ipv4_and_bracketed_ipv6():
    assert parse_address(" rollout-0.svc:50052 ") == "rollout-0.svc:50052"
    assert parse_address("10.0.0.7:1") == "10.0.0.7:1"
    assert parse_address("[::1]:50052") == "[::1]:50052"
    parsed = parse_address_lines("a:1\n\n# comment\na:1  # duplicate\nb:2\n")
    assert parsed.addresses == ["a:1", "b:2"] and parsed.problems == []


def test_groups_from_a_service_found_serving_other_weights_are_dropped_and_their_prompts_resent():
    """After `weights_mismatched` (the pusher saw a wrong fingerprint), groups it streamed before
    never reach training, queued ones included: their prompts come back from a later stream."""

    async def scenario():
        service = PoolRollout()
        server = await start(service)
        pool = RolloutPool([server.address], settings=FAST)
        client = client_for(pool)
        member = pool.get(server.address)
        received = []
        try:
            async for group in client.generate(prompts("a", 6)):
                received.append((group.prompt_id, group.policy_version))
                if len(received) == 1:  # the rest of the stream is in flight or queued already
                    service.policy_version = 7  # what it serves once resynced
                    pool.weights_mismatched(member)
        finally:
            await client.close()
            await server.stop(0)
        return received, service

    received, service = asyncio.run(scenario())
    assert sorted(pid for pid, _ in received) == sorted(p.id for p in prompts("a", 6))
    assert received[0][1] == 0 and all(version == 7 for _, version in received[1:])
    assert len(service.generate_events()) >= 2  # the dropped prompts were sent again
