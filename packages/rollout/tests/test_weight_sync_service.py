"""The weight-sync RPCs (InitWeightSync, UpdateWeightsDistributed) over real gRPC: refusals and bookkeeping.

The SGLang stand-ins here run in threads in recording mode (no process group): these tests pin what
the service refuses *before* any engine is involved, and how it opens, continues and abandons an
update. The real group and broadcast are tested end to end in tests/test_nccl_weight_sync.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpo.v1 import rollout_pb2
from grpo_rollout.config import RolloutServiceConfig
from rollout_reward_standin import RewardStandin
from rollout_service_harness import Client, config, request, serving, sglang_config, token_prompt
from rollout_sglang_standin import StandinServer

GROUP = "weight_update_group"
UPDATE = "/update_weights_from_distributed"
ENV = "rollout_scripted_envs:FixedObservation"
NORM = ("model.norm.weight", "float32", [32])  # a parameter of the tiny model


def run(coro):
    return asyncio.run(coro)


def init_request(**fields: Any) -> rollout_pb2.InitWeightSyncRequest:
    defaults = dict(
        master_address="10.0.0.1",
        master_port=29500,
        group_name=GROUP,
        backend="nccl",
        rank_offset=1,
        world_size=3,
    )
    return rollout_pb2.InitWeightSyncRequest(**(defaults | fields))


def bucket(*tensors: tuple[str, str, list[int]], **fields: Any) -> rollout_pb2.DistributedWeightsRequest:
    tensors = tensors or (NORM,)
    defaults = dict(policy_version=1, group_name=GROUP, bucket_index=0, last=True)
    return rollout_pb2.DistributedWeightsRequest(
        names=[n for n, _, _ in tensors],
        dtypes=[d for _, d, _ in tensors],
        shapes=[rollout_pb2.TensorShape(dims=s) for _, _, s in tensors],
        **(defaults | fields),
    )


async def status_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code(), caught.value.details()


async def receive(client: Client, servers: list[StandinServer], request) -> rollout_pb2.UpdateWeightsResponse:
    """Send one bucket and play the learner's broadcast: release each engine once it has the request."""
    before = [server.state.paths().count(UPDATE) for server in servers]
    call = asyncio.ensure_future(client.stub.UpdateWeightsDistributed(request, timeout=10))
    for server, count in zip(servers, before, strict=True):
        while server.state.paths().count(UPDATE) == count and not call.done():
            await asyncio.sleep(0.01)
        server.state.broadcast_done.set()
    return await call


def test_hf_backend_reports_no_ranks_and_answers_unimplemented(
    tiny_model_dir: Path, reward: RewardStandin
) -> None:
    async def scenario():
        async with serving(config(tiny_model_dir, reward.address)) as client:
            info = await client.stub.GetInfo(rollout_pb2.GetInfoRequest(), timeout=10)
            init = await status_of(client.stub.InitWeightSync(init_request(), timeout=10))
            update = await status_of(client.stub.UpdateWeightsDistributed(bucket(), timeout=10))
            return info, init, update

    info, init, update = run(scenario())
    assert (info.weight_sync_ranks, info.weight_sync_group) == (0, "")
    for code, details in (init, update):
        assert (
            code == grpc.StatusCode.UNIMPLEMENTED and "'hf' backend" in details and "UpdateWeights" in details
        )


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"master_address": " "}, "master_address"),
        ({"master_port": 0}, "master_port"),
        ({"master_port": 70000}, "master_port"),
        ({"group_name": ""}, "group_name"),
        ({"backend": "mpi"}, "backend"),
        ({"rank_offset": 0}, "rank_offset"),
        ({"world_size": 2}, "world_size 2"),  # 2 workers from rank 1 need a world of 3
    ],
)
def test_bad_init_requests_are_refused_naming_the_field(
    tiny_model_dir: Path, reward: RewardStandin, tmp_path: Path, fields: dict, named: str
) -> None:
    with StandinServer() as a, StandinServer() as b:

        async def scenario():
            async with serving(sglang_config(tiny_model_dir, reward, [a.url, b.url], tmp_path)) as client:
                return await status_of(client.stub.InitWeightSync(init_request(**fields), timeout=10))

        code, details = run(scenario())
        assert code == grpc.StatusCode.INVALID_ARGUMENT and named in details
        assert "/init_weights_update_group" not in a.state.paths() + b.state.paths()


BAD_BUCKETS = [
    (bucket(policy_version=-1), "policy_version"),
    (bucket(group_name=""), "group_name"),
    (rollout_pb2.DistributedWeightsRequest(policy_version=1, group_name=GROUP, last=True), "names is empty"),
    (
        rollout_pb2.DistributedWeightsRequest(
            policy_version=1, group_name=GROUP, names=["model.norm.weight"], dtypes=[], shapes=[]
        ),
        "dtypes has 0 entries for 1 names",
    ),
    (bucket(("model.norm.weight", "floot32", [32])), "dtypes[0]"),
    (bucket(("model.norm.weight", "float32", [-32])), "shapes[0]"),
    (bucket(NORM, ("model.norm.weight", "float32", [32])), "names[1] 'model.norm.weight' appears twice"),
    (bucket(NORM, ("model.nope", "float32", [1])), "names[1] 'model.nope' is not a parameter"),
    (bucket(("model.norm.weight", "bfloat16", [16, 2])), "shapes[0]"),
]


def test_bad_buckets_are_refused_naming_the_field_before_any_engine_call(
    tiny_model_dir: Path, reward: RewardStandin, tmp_path: Path
) -> None:
    with StandinServer() as server:

        async def scenario():
            async with serving(sglang_config(tiny_model_dir, reward, [server.url], tmp_path)) as client:
                not_joined = await status_of(client.stub.UpdateWeightsDistributed(bucket(), timeout=10))
                await client.stub.InitWeightSync(init_request(world_size=2), timeout=10)
                answers = [
                    await status_of(client.stub.UpdateWeightsDistributed(request, timeout=10))
                    for request, _ in BAD_BUCKETS
                ]
                return not_joined, answers

        not_joined, answers = run(scenario())
        assert (
            not_joined[0] == grpc.StatusCode.FAILED_PRECONDITION and "InitWeightSync first" in not_joined[1]
        )
        for (code, details), (_, named) in zip(answers, BAD_BUCKETS, strict=True):
            assert code == grpc.StatusCode.INVALID_ARGUMENT and named in details, details
        assert "/pause_generation" not in server.state.paths()
        assert "/update_weights_from_distributed" not in server.state.paths()


def test_buckets_continue_one_update_in_order_and_a_stray_bucket_is_refused(
    tiny_model_dir: Path, reward: RewardStandin, tmp_path: Path
) -> None:
    with StandinServer() as server:

        async def scenario():
            async with serving(sglang_config(tiny_model_dir, reward, [server.url], tmp_path)) as client:
                await client.stub.InitWeightSync(init_request(world_size=2), timeout=10)
                stray = await status_of(
                    client.stub.UpdateWeightsDistributed(bucket(bucket_index=1), timeout=10)
                )
                first = await receive(client, [server], bucket(last=False, policy_version=4))
                during = await client.version()
                skipped = await status_of(
                    client.stub.UpdateWeightsDistributed(bucket(bucket_index=2, policy_version=4), timeout=10)
                )
                other = await status_of(
                    client.stub.UpdateWeightsDistributed(bucket(bucket_index=1, policy_version=5), timeout=10)
                )
                last = await receive(client, [server], bucket(bucket_index=1, policy_version=4))
                return stray, first, during, skipped, other, last, await client.version()

        stray, first, during, skipped, other, last, after = run(scenario())
        assert stray[0] == grpc.StatusCode.FAILED_PRECONDITION and "no update is open" in stray[1]
        assert (first.policy_version, first.tensors, first.bytes) == (0, 1, 32 * 4)
        assert during == 0
        for code, details in (skipped, other):
            assert code == grpc.StatusCode.FAILED_PRECONDITION and "expecting bucket_index 1" in details
        assert last.policy_version == 4 and after == 4
        assert server.state.weight_version == "4"
        paths = [p for p in server.state.paths() if p.startswith(("/pause", "/continue", "/update"))]
        updates = ["/update_weights_from_distributed"] * 2
        assert paths == ["/pause_generation", *updates, "/continue_generation"]


def test_an_update_left_open_is_abandoned_and_generation_resumes(
    tiny_model_dir: Path, reward: RewardStandin, tmp_path: Path
) -> None:
    with StandinServer() as server:

        async def scenario():
            cfg = with_episodes(sglang_config(tiny_model_dir, reward, [server.url], tmp_path))
            async with serving(cfg) as client:
                updates = client.rollout.servicer._distributed  # the open-update watchdog reads its limits
                updates._limits = dataclasses.replace(updates._limits, distributed_update_idle_s=0.3)
                await client.stub.InitWeightSync(init_request(world_size=2), timeout=10)
                await receive(client, [server], bucket(last=False, policy_version=7))
                for _ in range(200):
                    if server.state.paths()[-1] == "/continue_generation":
                        break
                    await asyncio.sleep(0.02)
                late = await status_of(
                    client.stub.UpdateWeightsDistributed(bucket(bucket_index=1, policy_version=7), timeout=10)
                )
                # the abandoned update let go of the episode gate: episodes run again
                episodes = await asyncio.wait_for(client.generate(episodes_request()), timeout=30)
                return late, await client.version(), episodes

        late, version, episodes = run(scenario())
        assert version == 0 and late[0] == grpc.StatusCode.FAILED_PRECONDITION
        assert [len(g.completions) for g in episodes] == [2]
        # bucket 0 may have changed the engines: the start-up checkpoint is loaded back
        restores = [body for p, body in server.state.calls if p == "/update_weights_from_disk"]
        assert [(r["model_path"], r["weight_version"]) for r in restores] == [(str(tiny_model_dir), "0")]
        paths = server.state.paths()
        resumed = len(paths) - 1 - paths[::-1].index("/continue_generation")
        assert resumed > paths.index("/pause_generation") and not server.state.paused
        assert "/generate" in paths[resumed:]  # the episodes ran after the update was abandoned


def test_with_auth_on_the_weight_sync_rpcs_need_the_token(
    tiny_model_dir: Path, reward: RewardStandin, tmp_path: Path
) -> None:
    with StandinServer() as server:
        cfg = sglang_config(tiny_model_dir, reward, [server.url], tmp_path, auth_token="s3cret")

        async def scenario():
            async with serving(cfg) as client:
                init = await status_of(client.stub.InitWeightSync(init_request(world_size=2), timeout=10))
                update = await status_of(client.stub.UpdateWeightsDistributed(bucket(), timeout=10))
                ranks = await client.stub.InitWeightSync(
                    init_request(world_size=2), timeout=10, metadata=(("authorization", "Bearer s3cret"),)
                )
                return init, update, ranks

        init, update, answer = run(scenario())
        assert init[0] == update[0] == grpc.StatusCode.UNAUTHENTICATED
        assert answer.ranks == 1
        assert server.state.paths().count("/init_weights_update_group") == 1


def with_episodes(cfg: RolloutServiceConfig) -> RolloutServiceConfig:
    """`cfg` with the scripted environment loaded, as `--plugin` loads it."""
    return cfg.model_copy(update={"plugins": [ENV]})


@contextlib.asynccontextmanager
async def joined_with_episodes(
    model_dir: Path, reward: RewardStandin, server: StandinServer, tmp_path: Path
) -> AsyncIterator[Client]:
    """A service on the stand-in that runs the scripted episodes and has joined a weight group."""
    async with serving(with_episodes(sglang_config(model_dir, reward, [server.url], tmp_path))) as client:
        await client.stub.InitWeightSync(init_request(world_size=2), timeout=10)
        yield client


def episodes_request(step_sleep_s: float = 0.0) -> rollout_pb2.RolloutRequest:
    """One two-turn episode group whose environment steps sleep `step_sleep_s`."""
    episodes = request([token_prompt("p", [1, 5, 6])], max_new_tokens=24, temperature=0.0)
    episodes.environment.CopyFrom(
        rollout_pb2.EnvironmentSpec(
            name=ENV,
            max_turn_tokens=5,
            config_json=json.dumps({"slow_episode": "all", "step_sleep_s": step_sleep_s}),
        )
    )
    return episodes


def test_a_distributed_update_waits_for_running_episodes_so_no_group_mixes_versions(
    tiny_model_dir: Path, reward: RewardStandin, tmp_path: Path
) -> None:
    # Every episode's first step sleeps 1 s and bucket 0 arrives during it: the update must begin
    # (pause the engines, join the broadcast) only once the episode batch is over, as a push does.
    with StandinServer(model_path=str(tiny_model_dir)) as server:

        async def scenario():
            async with joined_with_episodes(tiny_model_dir, reward, server, tmp_path) as client:
                running = asyncio.create_task(client.generate(episodes_request(step_sleep_s=1.0)))
                await asyncio.sleep(0.4)
                updated = await receive(client, [server], bucket(policy_version=1))
                return await running, updated, running.done(), await client.version()

        groups, updated, finished_first, version = run(scenario())
    assert updated.policy_version == 1 and version == 1
    assert finished_first  # the update returned only after the episode batch
    (group,) = groups
    assert group.policy_version == 0 and all(c.episode.turns == 2 for c in group.completions)
    paths = server.state.paths()
    last_generate = max(i for i, p in enumerate(paths) if p == "/generate")
    assert last_generate < paths.index("/pause_generation")  # every turn ran before the update began


def test_a_bucket_whose_caller_goes_away_lets_episodes_run_again(
    tiny_model_dir: Path, reward: RewardStandin, tmp_path: Path
) -> None:
    # The broadcast never comes (the stand-in waits for it), so the learner's deadline cancels the
    # bucket mid-receive: the update is abandoned and the episode gate it held is let go.
    with StandinServer(model_path=str(tiny_model_dir)) as server:

        async def scenario():
            async with joined_with_episodes(tiny_model_dir, reward, server, tmp_path) as client:
                gone = await status_of(
                    client.stub.UpdateWeightsDistributed(bucket(policy_version=3), timeout=1)
                )
                server.state.broadcast_done.set()  # the engine's part of the broadcast ends
                episodes = await asyncio.wait_for(client.generate(episodes_request()), timeout=30)
                return gone, episodes, await client.version()

        gone, episodes, version = run(scenario())
    assert gone[0] == grpc.StatusCode.DEADLINE_EXCEEDED
    assert [len(g.completions) for g in episodes] == [2] and version == 0
