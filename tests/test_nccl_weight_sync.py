"""NCCL weight sync end to end, on CPU with gloo: learner rank 0 -> rollout service -> SGLang stand-ins.

Every part is real except SGLang itself: the learner's NcclWeightSync hosts the TCP store and
forms the group as rank 0; a real RolloutService (gRPC on loopback, sglang backend) coordinates;
two SGLang stand-in *processes* (HTTP servers) join the group exactly as SGLang 0.5.x does and
receive the broadcasts into fresh tensors, recording each bucket to disk. The group runs on gloo
because there is no GPU here; NCCL itself is exercised only on a GPU machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
import torch
from grpo.v1 import rollout_pb2, rollout_pb2_grpc
from grpo_common.server import ServerConfig
from grpo_learner.config import PushConfig
from grpo_learner.weight_sync.nccl_pusher import NcclWeightPusher
from grpo_learner.weight_sync.nccl_sync import NcclWeightSync, WeightSyncError
from grpo_rollout.app import running_rollout
from grpo_rollout.config import LimitSettings, RewardSettings, RolloutServiceConfig
from safetensors import safe_open

ROLLOUT_TESTS = Path(__file__).resolve().parents[1] / "packages" / "rollout" / "tests"
sys.path.insert(0, str(ROLLOUT_TESTS))

from rollout_reward_standin import RewardStandin  # noqa: E402
from rollout_testkit import build_model_dir, other_weights  # noqa: E402

torch.set_num_threads(1)
GROUP = "weight_update_group"
TIMEOUT_S = 30.0  # rendezvous/broadcast deadline on both sides: a hang fails the test, it never stalls CI


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Engine:
    """One SGLang stand-in process (one GPU's worth: one rank)."""

    url: str
    record_dir: Path
    process: subprocess.Popen

    def log(self) -> dict:
        return httpx.get(self.url + "/standin/log", timeout=10).json()

    def control(self, **knobs: object) -> None:
        httpx.post(self.url + "/standin/control", json=knobs, timeout=10).raise_for_status()

    def received(self) -> list[tuple[str, torch.Tensor]]:
        """Every recorded tensor, in the order the engine received them."""
        tensors = []
        for file in sorted(self.record_dir.glob("bucket-*.safetensors")):
            with safe_open(str(file), framework="pt") as handle:
                names = json.loads(handle.metadata()["names"])
                tensors += [(name, handle.get_tensor(name)) for name in names]
        return tensors

    def reset(self, model_dir: Path) -> None:
        """Back to the start-up checkpoint (version 0), as a fresh engine; recorded buckets dropped."""
        for file in self.record_dir.glob("bucket-*.safetensors"):
            file.unlink()
        body = {"model_path": str(model_dir), "weight_version": "0", "flush_cache": True}
        response = httpx.post(
            self.url + "/update_weights_from_disk", json=body | {"abort_all_requests": False}
        )
        response.raise_for_status()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="module")
def engines(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Engine]]:
    started = []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for i in range(2):
        port, record = free_port(), tmp_path_factory.mktemp(f"engine{i}")
        command = [
            sys.executable,
            str(ROLLOUT_TESTS / "rollout_sglang_standin.py"),
            "--model-path", str(model_dir), "--port", str(port), "--weight-version", "0",
            "--join-groups", "--record-dir", str(record), "--pg-timeout-s", str(TIMEOUT_S),
        ]  # fmt: skip
        started.append(Engine(f"http://127.0.0.1:{port}", record, subprocess.Popen(command, env=env)))
    try:
        # Only a hang reaches this: with SGLang's request classes on the path (the schema check, see the
        # rollout README) each stand-in imports them before it serves, which takes a while on a busy box.
        deadline = time.monotonic() + 300
        for engine in started:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(engine.url + "/health", timeout=1).status_code == 200:
                        break
                assert engine.process.poll() is None, "stand-in exited"
                assert time.monotonic() < deadline, "stand-in did not answer /health"
                time.sleep(0.1)
        yield started
    finally:
        for engine in started:
            engine.process.terminate()
            engine.process.wait(10)


@pytest.fixture(scope="module")
def reward() -> Iterator[RewardStandin]:
    standin = RewardStandin().start()
    yield standin
    standin.stop()


@contextlib.asynccontextmanager
async def rollout_service(
    model_dir: Path,
    reward: RewardStandin,
    urls: list[str],
    weight_dir: Path,
    generator: str = "sglang",
    port: int = 0,
) -> AsyncIterator[tuple[str, rollout_pb2_grpc.RolloutServiceStub]]:
    config = RolloutServiceConfig(
        model=str(model_dir),
        generator=generator,  # type: ignore[arg-type]
        server=ServerConfig(port=port, grace_seconds=1),
        reward=RewardSettings(address=reward.address, timeout_s=5, attempts=2, backoff_s=0.05),
        sglang={"urls": urls, "weight_dir": str(weight_dir), "health_timeout_s": 30},  # type: ignore[arg-type]
        limits=LimitSettings(),
    )
    async with (
        running_rollout(config) as rollout,
        grpc.aio.insecure_channel(rollout.server.address) as channel,
    ):
        yield rollout.server.address, rollout_pb2_grpc.RolloutServiceStub(channel)


def learner_sync(bucket_bytes: int = 8 * 1024) -> NcclWeightSync:
    push = PushConfig(
        transport="nccl",
        nccl={
            "master_address": "127.0.0.1",
            "backend": "gloo",
            "bucket_bytes": bucket_bytes,
            "timeout_s": TIMEOUT_S,
        },
    )
    return NcclWeightSync.from_config(push)


def mixed_weights(model_dir: Path, seed: int) -> list[tuple[str, torch.Tensor]]:
    """The model's parameters with new values, every other one in bfloat16 (sent as such)."""
    weights = list(other_weights(model_dir, seed).items())
    return [(n, t.to(torch.bfloat16) if i % 2 else t) for i, (n, t) in enumerate(weights)]


def generate_request() -> rollout_pb2.RolloutRequest:
    return rollout_pb2.RolloutRequest(
        prompts=[rollout_pb2.Prompt(id="p0", token_ids=[1, 5, 6], reference="7")],
        group_size=2,
        sampling=rollout_pb2.SamplingParams(max_new_tokens=4),
    )


async def generated_versions(stub: rollout_pb2_grpc.RolloutServiceStub) -> set[int]:
    return {group.policy_version async for group in stub.Generate(generate_request(), timeout=30)}


def bits(tensor: torch.Tensor) -> bytes:
    return tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def test_weights_reach_every_engine_bit_exact_in_names_order_and_the_version_follows_the_last_bucket(
    model_dir: Path, engines: list[Engine], reward: RewardStandin, tmp_path: Path
) -> None:
    for engine in engines:
        engine.reset(model_dir)
    weights = mixed_weights(model_dir, seed=3)

    async def scenario():
        urls = [e.url for e in engines]
        async with rollout_service(model_dir, reward, urls, tmp_path / "w") as (address, stub):
            before = await stub.GetInfo(rollout_pb2.GetInfoRequest(), timeout=10)
            sync = learner_sync()
            try:
                await sync.connect([address])
                joined = await stub.GetInfo(rollout_pb2.GetInfoRequest(), timeout=10)
                report = await sync.push(iter(weights), version=1)  # a generator, as a sharded learner gives
                after = await stub.GetInfo(rollout_pb2.GetInfoRequest(), timeout=10)
                return before, joined, report, after, await generated_versions(stub), sync.world_size
            finally:
                await sync.close()

    before, joined, report, after, versions, world_size = asyncio.run(scenario())
    assert (before.weight_sync_ranks, before.weight_sync_group) == (2, "")
    assert joined.weight_sync_group == GROUP and world_size == 3
    assert report.buckets > 2 and report.tensors == len(weights)
    assert (after.policy_version, versions) == (1, {1})
    for rank, engine in enumerate(engines, start=1):
        received = engine.received()
        assert [n for n, _ in received] == [n for n, _ in weights]
        for (name, sent), (_, got) in zip(weights, received, strict=True):
            assert got.dtype == sent.dtype and got.shape == sent.shape, name
            assert bits(got) == bits(sent), name
        log = engine.log()
        assert [e["rank"] for e in log["events"] if e["kind"] == "joined"][-1] == rank
        update = [e for e in log["events"] if e["kind"] in ("request", "received", "recorded")]
        update = update[-3 * report.buckets :]
        # each bucket: the request arrives, then the broadcast is received, then it is loaded
        assert [e["kind"] for e in update] == ["request", "received", "recorded"] * report.buckets
        assert [e["weight_version"] for e in update if e["kind"] == "request"] == [None] * (
            report.buckets - 1
        ) + ["1"]
        calls = [path for path, _ in log["calls"] if path.startswith(("/pause", "/continue", "/update"))]
        assert calls[-(report.buckets + 2) :] == (
            ["/pause_generation"]
            + ["/update_weights_from_distributed"] * report.buckets
            + ["/continue_generation"]
        )
        assert log["weight_version"] == "1"


def test_a_refused_update_advances_no_version_and_the_learner_gets_the_engines_reason(
    model_dir: Path, engines: list[Engine], reward: RewardStandin, tmp_path: Path
) -> None:
    for engine in engines:
        engine.reset(model_dir)

    async def scenario():
        urls = [e.url for e in engines]
        async with rollout_service(model_dir, reward, urls, tmp_path / "w") as (address, stub):
            sync = learner_sync()
            seen = {}
            try:
                await sync.connect([address])
                # 1) refused while the start-up checkpoint is the current version: restored from disk
                engines[1].control(reject_distributed="size mismatch for lm_head.weight")
                with pytest.raises(WeightSyncError) as first:
                    await sync.push(mixed_weights(model_dir, 4), version=1)
                seen["first"] = first.value, sync.broken
                seen["after_first"] = (await stub.GetInfo(rollout_pb2.GetInfoRequest())).policy_version
                seen["generated_first"] = await generated_versions(stub)
                # the group survived (the engine refused after receiving): the same push goes through
                await sync.push(mixed_weights(model_dir, 4), version=1)
                # 2) refused when the current version exists only in the engines: generation is refused
                engines[0].control(reject_distributed="CUDA out of memory")
                with pytest.raises(WeightSyncError) as second:
                    await sync.push(mixed_weights(model_dir, 5), version=2)
                seen["second"] = second.value
                seen["after_second"] = (await stub.GetInfo(rollout_pb2.GetInfoRequest())).policy_version
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await generated_versions(stub)
                seen["refused"] = refused.value
                await sync.push(mixed_weights(model_dir, 5), version=2)
                seen["generated_last"] = await generated_versions(stub)
                seen["after_last"] = (await stub.GetInfo(rollout_pb2.GetInfoRequest())).policy_version
                return seen
            finally:
                await sync.close()

    seen = asyncio.run(scenario())
    first, broken = seen["first"]
    assert "ABORTED" in str(first) and "size mismatch for lm_head.weight" in str(first) and not broken
    assert "stay on version 0" in str(first) and "restored from" in str(first)
    assert seen["after_first"] == 0 and seen["generated_first"] == {0}
    assert "CUDA out of memory" in str(seen["second"]) and seen["after_second"] == 1
    assert seen["refused"].code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "push a complete update" in seen["refused"].details()
    assert seen["generated_last"] == {2} and seen["after_last"] == 2
    disk_loads = [body["weight_version"] for path, body in engines[0].log()["calls"] if "from_disk" in path]
    assert disk_loads[-2:] == ["0", "0"]  # the reset, then the first refusal's restore; never the second


def test_a_learner_cannot_form_a_group_with_a_backend_that_cannot_join(
    model_dir: Path, reward: RewardStandin, tmp_path: Path
) -> None:
    async def scenario():
        async with rollout_service(model_dir, reward, [], tmp_path / "w", generator="hf") as (address, _):
            sync = learner_sync()
            with pytest.raises(WeightSyncError) as caught:
                await sync.connect([address])
            with pytest.raises(WeightSyncError, match="not connected"):
                await sync.push(mixed_weights(model_dir, 1), version=1)
            return caught.value

    error = asyncio.run(scenario())
    assert "weight_sync_ranks 0" in str(error) and "(hf)" in str(error)


def test_a_bucket_the_service_refuses_breaks_the_group_and_a_reconnect_starts_a_clean_one(
    model_dir: Path, engines: list[Engine], reward: RewardStandin, tmp_path: Path
) -> None:
    """The engines never take part in a refused bucket, so rank 0 is left in the broadcast and the
    group's collectives are out of step: the learner must say so at once, and a new group works."""
    for engine in engines:
        engine.reset(model_dir)
    good = mixed_weights(model_dir, 6)
    bad = [*good[:2], ("model.no_such.weight", torch.zeros(3))]

    async def scenario():
        urls = [e.url for e in engines]
        async with rollout_service(model_dir, reward, urls, tmp_path / "w") as (address, stub):
            sync = learner_sync()
            try:
                await sync.connect([address])
                with pytest.raises(WeightSyncError) as caught:
                    await sync.push(bad, version=1)
                broken = sync.broken
                with pytest.raises(WeightSyncError, match="unusable"):
                    await sync.push(good, version=1)
                await sync.close()
                for engine in engines:
                    engine.reset(model_dir)
                await sync.connect([address])
                await sync.push(good, version=1)
                info = await stub.GetInfo(rollout_pb2.GetInfoRequest(), timeout=10)
                return caught.value, broken, sync.group_name, info
            finally:
                await sync.close()

    error, broken, group, info = asyncio.run(scenario())
    assert "INVALID_ARGUMENT" in str(error) and "model.no_such.weight" in str(error)
    # the service's refusal ended the push (its INVALID_ARGUMENT), not the broadcast's timeout
    assert "unusable" in str(error) and broken
    assert group == f"{GROUP}-2"  # the stuck group still holds its name until its broadcast times out
    assert (info.policy_version, info.weight_sync_group) == (1, group)
    for engine in engines:
        received = engine.received()
        assert [n for n, _ in received] == [n for n, _ in good]
        assert all(bits(a) == bits(b) for (_, a), (_, b) in zip(received, good, strict=True))


def test_the_loops_pusher_forms_the_group_again_when_a_rollout_service_restarted(
    model_dir: Path, engines: list[Engine], reward: RewardStandin, tmp_path: Path
) -> None:
    for engine in engines:
        engine.reset(model_dir)
    push = PushConfig(
        transport="nccl",
        nccl={
            "master_address": "127.0.0.1",
            "backend": "gloo",
            "bucket_bytes": 64 * 1024,
            "timeout_s": TIMEOUT_S,
        },
    )
    port = free_port()

    async def scenario():
        urls = [e.url for e in engines]
        pusher = None
        try:
            async with rollout_service(model_dir, reward, urls, tmp_path / "w", port=port) as (address, stub):
                pusher = NcclWeightPusher([address], push)
                behind = await pusher.push(dict(mixed_weights(model_dir, 7)), 1)
            # the same address, a fresh process: it has no group and serves what the engines report
            async with rollout_service(model_dir, reward, urls, tmp_path / "w", port=port) as (_, stub):
                restarted = await stub.GetInfo(rollout_pb2.GetInfoRequest(), timeout=10)
                await pusher.push(dict(mixed_weights(model_dir, 8)), 2)
                info = await stub.GetInfo(rollout_pb2.GetInfoRequest(), timeout=10)
                return behind, restarted, info, await generated_versions(stub)
        finally:
            if pusher is not None:
                await pusher.close()

    behind, restarted, info, versions = asyncio.run(scenario())
    assert behind == [] and (restarted.weight_sync_group, restarted.policy_version) == ("", 1)
    assert (info.weight_sync_group, info.policy_version, versions) == (GROUP, 2, {2})
    expected = mixed_weights(model_dir, 8)
    for engine in engines:
        received = engine.received()[-len(expected) :]
        assert [n for n, _ in received] == [n for n, _ in expected]
        assert all(bits(a) == bits(b) for (_, a), (_, b) in zip(received, expected, strict=True))
