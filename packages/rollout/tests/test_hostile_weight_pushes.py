"""Weight pushes a diverged learner or an attacker could send, against a real RolloutService (issue 11).

- Item 6: tensors holding NaN / inf (right names, shapes and checksums) are refused naming the
  tensor; the version and the served weights stay as they were, and Generate keeps working.
- Item 7: a ~100-byte chunk claiming a 1 GiB tensor is refused before the memory is claimed (the
  service knows its model's tensor specs), and the process's peak RSS does not jump.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path

import grpc
import pytest
import torch
from grpo_common.channel import create_channel
from grpo_common.weights.codec import encode_state_dict, encode_state_dict_wire, update_weights_method
from grpo_common.weights.wire import ChunkView, PieceView, write_chunk
from rollout_reward_standin import RewardStandin
from rollout_service_harness import config, request, serving, token_prompt
from rollout_testkit import other_weights

GIB = 1024**3
GREEDY_REQUEST = request([token_prompt("p", [1, 5, 6])], temperature=0.0)


@pytest.fixture
def reward():
    standin = RewardStandin().start()
    yield standin
    standin.stop()


def non_finite_pushes(good: dict[str, torch.Tensor]) -> dict[str, tuple[dict[str, torch.Tensor], str]]:
    """name -> (weights to push, the tensor the refusal must name)."""
    poisoned = "model.layers.1.mlp.down_proj.weight"
    one_inf = good[poisoned].clone()
    one_inf.view(-1)[17] = float("inf")
    one_nan = good[poisoned].clone()
    one_nan.view(-1)[-1] = float("nan")
    all_nan = {name: torch.full_like(t, float("nan")) for name, t in good.items()}
    first = next(iter(good))
    return {
        "all NaN": (all_nan, first),
        "one +inf": ({**good, poisoned: one_inf}, poisoned),
        "one NaN, last element": ({**good, poisoned: one_nan}, poisoned),
    }


def test_non_finite_weights_are_refused_naming_the_tensor_and_nothing_changes(
    tiny_model_dir: Path, reward: RewardStandin
) -> None:
    good = other_weights(tiny_model_dir, seed=3)
    pushes = non_finite_pushes(good)

    async def scenario():
        errors = {}
        async with serving(config(tiny_model_dir, reward.address)) as client:
            before = await client.generate(GREEDY_REQUEST)
            for name, (weights, _) in pushes.items():
                # 4 KiB buckets: the poisoned tensor comes in several pieces, its bad element in a later one
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await client.stub.UpdateWeights(
                        encode_state_dict(weights, 7, bucket_bytes=4096), timeout=30
                    )
                errors[name] = caught.value
            after = await client.generate(GREEDY_REQUEST)
            version = await client.version()
            await client.stub.UpdateWeights(encode_state_dict(good, 8), timeout=30)  # finite: taken
            return before, errors, after, version, await client.version()

    before, errors, after, version, accepted = asyncio.run(scenario())
    for name, (_, tensor) in pushes.items():
        error = errors[name]
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, error.details())
        assert f"tensor {tensor!r}" in error.details() and "non-finite" in error.details(), error.details()
    assert version == 0
    assert before[0].completions[0].token_ids == after[0].completions[0].token_ids
    assert accepted == 8


def peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/self/status")


def reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets VmHWM to the current RSS (best effort)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def claim(name: str, shape: tuple[int, ...], dtype: str = "float32") -> bytes:
    """One ~100-byte chunk: the first 64 bytes of a tensor it says is `shape`, more to follow."""
    return write_chunk(ChunkView(1, [PieceView(name, dtype, shape, 0, bytes(64), None)]))


CLAIMS = {
    "a tensor the model lacks": (
        claim("model.huge.weight", (GIB // 4,)),
        r"unknown tensor name 'model\.huge",
    ),
    "a real tensor, 1 GiB shape": (
        claim("model.embed_tokens.weight", (GIB // 4 // 32, 32)),
        r"'model\.embed_tokens\.weight': shape \[8388608, 32\] does not match the model's \[\d+, 32\]",
    ),
    "a real tensor, other dtype": (
        claim("model.norm.weight", (32,), "float64"),
        r"'model\.norm\.weight': dtype float64 does not match the model's float32",
    ),
}


def test_a_small_chunk_claiming_a_huge_tensor_is_refused_before_memory_is_claimed(
    tiny_model_dir: Path, reward: RewardStandin
) -> None:
    assert all(len(chunk) < 128 for chunk, _ in CLAIMS.values())

    async def scenario():
        errors, growth = {}, {}
        async with serving(config(tiny_model_dir, reward.address)) as client:
            channel = create_channel(client.rollout.server.address)
            push = update_weights_method(channel)
            for name, (chunk, _) in CLAIMS.items():
                reset_peak_rss()
                start = peak_rss_bytes()
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await push(iter([chunk]), timeout=30)
                growth[name] = peak_rss_bytes() - start
                errors[name] = caught.value
            good = other_weights(tiny_model_dir, seed=3)
            answer = await push(encode_state_dict_wire(good, 2), timeout=30)  # still takes real updates
            await channel.close()
            return errors, growth, answer.policy_version

    errors, growth, version = asyncio.run(scenario())
    for name, (_, pattern) in CLAIMS.items():
        assert growth[name] < 64 * 1024 * 1024, f"{name}: peak RSS grew by {growth[name] / 2**20:.0f} MiB"
        assert errors[name].code() == grpc.StatusCode.INVALID_ARGUMENT, (name, errors[name].details())
        assert re.search(pattern, errors[name].details()), (name, errors[name].details())
    assert version == 2
