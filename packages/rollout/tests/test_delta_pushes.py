"""Delta pushes and fingerprints against a real RolloutService (hf backend, real gRPC; issue 27).

A delta applies only on top of exactly the base it names, in place, and leaves the model holding
exactly the bits a full push would; every reply carries the fingerprint of what is served.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
import torch
from grpo.v1 import rollout_pb2
from grpo_common.weights.codec import encode_chunk_views
from grpo_common.weights.delta import diff_state_dicts, element_bits
from grpo_common.weights.fingerprint import Fingerprint, fingerprint
from rollout_reward_standin import RewardStandin
from rollout_service_harness import Client, config, serving, sglang_config
from rollout_sglang_standin import StandinServer
from rollout_testkit import other_weights
from safetensors.torch import load_file


@pytest.fixture
def reward():
    standin = RewardStandin().start()
    yield standin
    standin.stop()


def nudged(weights: dict[str, torch.Tensor], fraction: float, seed: int) -> dict[str, torch.Tensor]:
    """`weights` with about `fraction` of the elements moved a little (an RL step), one tensor untouched."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for i, (name, tensor) in enumerate(weights.items()):
        picks = torch.rand(tensor.shape, generator=generator) < fraction
        out[name] = tensor if i == 1 else torch.where(picks, tensor * 1.01 + 1e-3, tensor)
    out["lm_head.weight"] = out["model.embed_tokens.weight"]
    return out


async def push(
    client: Client,
    tensors,
    version: int,
    base: tuple[int, Fingerprint] | None = None,
    full_set: bool = True,
) -> rollout_pb2.UpdateWeightsResponse:
    delta_base = None
    if base is not None:
        delta_base = rollout_pb2.DeltaBase(policy_version=base[0], fingerprint=base[1].to_proto())
    chunks = encode_chunk_views(tensors, version, 4096, delta_base=delta_base, full_set=full_set)
    return await client.stub.UpdateWeights((c.to_proto() for c in chunks), timeout=30)


def served_bits(client: Client) -> dict[str, torch.Tensor]:
    return {name: element_bits(t).clone() for name, t in client.rollout.generator.served_tensors().items()}


def test_a_delta_push_serves_exactly_the_bits_of_a_full_push(
    tiny_model_dir: Path, reward: RewardStandin
) -> None:
    first = other_weights(tiny_model_dir, seed=1)
    second = nudged(first, 0.05, seed=2)
    third = nudged(second, 0.5, seed=3)

    async def scenario():
        async with serving(config(tiny_model_dir, reward.address)) as client:
            replies = [await push(client, first, 1)]
            for version, (old, new) in enumerate([(first, second), (second, third)], start=2):
                diff = diff_state_dicts(old, new)
                base = (version - 1, Fingerprint.from_proto(replies[-1].fingerprint))
                replies.append(await push(client, diff.items, version, base=base))
            info = await client.stub.GetInfo(rollout_pb2.GetInfoRequest(), timeout=10)
            return replies, info, served_bits(client), await client.version()

    replies, info, served, version = asyncio.run(scenario())
    assert version == 3
    assert [Fingerprint.from_proto(r.fingerprint) for r in replies] == [
        fingerprint(first),
        fingerprint(second),
        fingerprint(third),
    ]
    assert all(r.takes_deltas for r in replies) and info.takes_deltas
    assert Fingerprint.from_proto(info.fingerprint) == fingerprint(third)
    for name, tensor in third.items():
        assert torch.equal(served[name], element_bits(tensor)), name
    assert replies[1].bytes < sum(t.numel() * t.element_size() for t in second.values()) // 4


def test_a_delta_on_any_other_base_is_refused_and_nothing_changes(
    tiny_model_dir: Path, reward: RewardStandin
) -> None:
    first = other_weights(tiny_model_dir, seed=1)
    second = nudged(first, 0.05, seed=2)
    diff = diff_state_dicts(first, second)
    right = fingerprint(first)
    wrong = Fingerprint(right.digest ^ 1, right.tensors)

    async def scenario():
        async with serving(config(tiny_model_dir, reward.address)) as client:
            errors = {}
            with pytest.raises(grpc.aio.AioRpcError) as caught:  # a fresh service has no base of ours
                await push(client, diff.items, 2, base=(0, right))
            errors["fresh"] = caught.value
            await push(client, first, 1)
            for label, base in {"older version": (0, right), "other bits": (1, wrong)}.items():
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await push(client, diff.items, 2, base=base)
                errors[label] = caught.value
            return errors, served_bits(client), await client.version()

    errors, served, version = asyncio.run(scenario())
    for label, error in errors.items():
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, (label, error.details())
        assert "send every tensor whole" in error.details(), error.details()
    assert "serves 1" in errors["older version"].details()
    assert "fingerprint" in errors["other bits"].details()
    assert version == 1
    assert all(torch.equal(served[n], element_bits(t)) for n, t in first.items())


def test_sglang_applies_a_delta_to_its_host_copy_and_hands_the_engine_full_tensors(
    tiny_model_dir: Path, reward: RewardStandin, tmp_path: Path
) -> None:
    first = other_weights(tiny_model_dir, seed=1)
    second = nudged(first, 0.05, seed=2)
    diff = diff_state_dicts(first, second)

    with StandinServer(model_path=str(tiny_model_dir)) as engine:

        async def scenario():
            async with serving(sglang_config(tiny_model_dir, reward, [engine.url], tmp_path)) as client:
                full = await push(client, first, 1)
                delta = await push(client, diff.items, 2, base=(1, Fingerprint.from_proto(full.fingerprint)))
                return full, delta

        full, delta = asyncio.run(scenario())
        loaded = engine.state.loaded_names
        assert engine.state.weight_version == "2"
    assert full.takes_deltas and delta.takes_deltas
    assert Fingerprint.from_proto(delta.fingerprint) == fingerprint(second)
    on_disk = load_file(str(tmp_path / "w" / "v2" / "model.safetensors"))
    changed = {name for name, _ in diff.items}
    assert sorted(loaded) == sorted(on_disk) == sorted(changed)  # whole tensors, the changed ones only
    for name in changed:
        assert torch.equal(element_bits(on_disk[name]), element_bits(second[name])), name


def test_sglang_without_a_host_copy_takes_full_pushes_only(
    tiny_model_dir: Path, reward: RewardStandin, tmp_path: Path
) -> None:
    first = other_weights(tiny_model_dir, seed=1)
    diff = diff_state_dicts(first, nudged(first, 0.05, seed=2))
    with StandinServer(model_path=str(tiny_model_dir)) as engine:
        cfg = sglang_config(tiny_model_dir, reward, [engine.url], tmp_path)
        cfg = cfg.model_copy(update={"sglang": cfg.sglang.model_copy(update={"host_copy": False})})

        async def scenario():
            async with serving(cfg) as client:
                full = await push(client, first, 1)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await push(client, diff.items, 2, base=(1, Fingerprint.from_proto(full.fingerprint)))
                return full, caught.value

        full, error = asyncio.run(scenario())
    assert not full.takes_deltas
    assert Fingerprint.from_proto(full.fingerprint) == fingerprint(first)  # from what it received
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "keeps no copy" in error.details()


def test_a_delta_that_makes_a_tensor_non_finite_is_refused_like_a_full_push(
    tiny_model_dir: Path, reward: RewardStandin
) -> None:
    first = other_weights(tiny_model_dir, seed=1)
    poisoned = {name: t.clone() for name, t in first.items()}
    poisoned["model.norm.weight"].view(-1)[3] = float("nan")
    diff = diff_state_dicts(first, poisoned)

    async def scenario():
        async with serving(config(tiny_model_dir, reward.address)) as client:
            full = await push(client, first, 1)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await push(client, diff.items, 2, base=(1, Fingerprint.from_proto(full.fingerprint)))
            info = await client.stub.GetInfo(rollout_pb2.GetInfoRequest(), timeout=10)
            return caught.value, info, served_bits(client)

    error, info, served = asyncio.run(scenario())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'model.norm.weight'" in error.details() and "NaN" in error.details(), error.details()
    assert info.policy_version == 1 and Fingerprint.from_proto(info.fingerprint) == fingerprint(first)
    assert all(torch.equal(served[n], element_bits(t)) for n, t in first.items())
