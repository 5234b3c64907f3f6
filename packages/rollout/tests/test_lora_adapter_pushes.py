"""Adapter-only weight pushes (WeightChunk.lora_adapter) over real gRPC, sglang backend vs the stand-in.

The stream is built with the common codec's encoder, as the learner's pusher does with
`push.lora_mode = "adapter"`; the stand-in reads the adapter back from the peft directory the
service wrote, and its generation depends on the adapter that serves each request.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import torch
from grpo.v1 import rollout_pb2
from grpo_common.weights.codec import encode_chunk_views, encode_state_dict
from grpo_rollout.backends.sglang.lora import write_peft_adapter
from grpo_rollout.lora_adapters import validate_adapter_spec
from rollout_reward_standin import RewardStandin
from rollout_service_harness import config, request, serving, sglang_config, token_prompt
from rollout_sglang_standin import StandinServer, predicted_tokens
from rollout_sglang_standin_lora import LoraState, adapter_shift
from rollout_testkit import other_weights

TARGETS = ["q_proj", "v_proj"]
RANK = 4
# the tiny model: hidden 32, 4 heads, 2 KV heads of 8 -> q_proj 32 x 32, v_proj 16 x 32; 2 layers
OUT_FEATURES = {"q_proj": 32, "v_proj": 16}


def run(coro):
    return asyncio.run(coro)


def spec(**fields: Any) -> rollout_pb2.LoraAdapterSpec:
    return rollout_pb2.LoraAdapterSpec(**({"rank": RANK, "alpha": 8.0, "target_modules": TARGETS} | fields))


def adapter(seed: int, rank: int = RANK) -> dict[str, torch.Tensor]:
    """peft-named adapter tensors for the tiny model, as `LoraLayout.adapter_tensors` gives them."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(2):
        for module, out_features in OUT_FEATURES.items():
            name = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            tensors[f"{name}.lora_A.weight"] = torch.randn((rank, 32), generator=generator)
            tensors[f"{name}.lora_B.weight"] = torch.randn((out_features, rank), generator=generator)
    return tensors


def chunks(tensors: dict[str, torch.Tensor], version: int, lora: rollout_pb2.LoraAdapterSpec, **kw):
    return [view.to_proto() for view in encode_chunk_views(tensors, version, lora_adapter=lora, **kw)]


def lora_server(**limits: Any) -> StandinServer:
    server = StandinServer()
    server.state.lora = LoraState(enabled=True, max_rank=8, target_modules=TARGETS, **limits)
    return server


async def status_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code(), caught.value.details()


async def refusal(client, stream: list[rollout_pb2.WeightChunk]) -> tuple[grpc.StatusCode, str]:
    return await status_of(client.stub.UpdateWeights(iter(stream), timeout=30))


PROMPTS = [token_prompt("p0", [1, 5, 6]), token_prompt("p1", [1, 9])]


def generate_payloads(server: StandinServer) -> list[dict[str, Any]]:
    return [body for path, body in server.state.calls if path == "/generate"]


def test_adapter_pushes_are_loaded_from_peft_dirs_and_serve_every_later_request(
    tiny_model_dir: Path, reward: RewardStandin, tmp_path: Path
) -> None:
    first, second = adapter(seed=1), adapter(seed=2)
    with lora_server() as server:

        async def scenario():
            async with serving(sglang_config(tiny_model_dir, reward, [server.url], tmp_path)) as client:
                answer = await client.stub.UpdateWeights(iter(chunks(first, 1, spec())), timeout=30)
                loaded_v1 = dict(server.state.lora.loaded)
                calls_before = len(server.state.calls)
                groups_v1 = await client.generate(request(PROMPTS, group_size=2, seed=3))
                payloads_v1 = generate_payloads(server)
                pushes = len(server.state.calls)
                await client.stub.UpdateWeights(iter(chunks(second, 2, spec())), timeout=30)
                push_v2 = [(path, body.get("lora_name")) for path, body in server.state.calls[pushes:]]
                groups_v2 = await client.generate(request(PROMPTS, group_size=2, seed=3))
                return answer, loaded_v1, calls_before, groups_v1, payloads_v1, push_v2, groups_v2

        answer, loaded_v1, calls_before, groups_v1, payloads_v1, push_v2, groups_v2 = run(scenario())
        state = server.state
        paths = state.paths()

    assert answer.policy_version == 1 and answer.tensors == len(first)
    # v1 was loaded between pause and continue, from a peft directory holding what was sent
    assert paths[:calls_before].index("/pause_generation") < paths.index("/load_lora_adapter")
    assert paths.index("/load_lora_adapter") < paths.index("/continue_generation")
    assert list(loaded_v1) == ["grpo-lora-v1"]
    lora = loaded_v1["grpo-lora-v1"]
    assert Path(lora.path) == tmp_path / "w" / "grpo-lora-v1"
    assert lora.config["r"] == RANK and lora.config["lora_alpha"] == 8.0
    assert lora.config["target_modules"] == TARGETS and lora.config["peft_type"] == "LORA"
    assert lora.config["task_type"] == "CAUSAL_LM"
    assert lora.config["base_model_name_or_path"] == str(tiny_model_dir)
    assert sorted(lora.tensors) == sorted(first)
    assert all(torch.equal(lora.tensors[name], tensor) for name, tensor in first.items())
    # every later /generate names the adapter, one per sequence; the groups carry version 1
    assert payloads_v1 and all(p["lora_path"] == ["grpo-lora-v1"] * 2 for p in payloads_v1)
    assert {g.policy_version for g in groups_v1} == {1}
    # ... and the stand-in generated them with that adapter (its tokens depend on the adapter)
    p0 = next(p for p in payloads_v1 if p["input_ids"][0] == [1, 5, 6])
    seeds = [params["sampling_seed"] for params in p0["sampling_params"]]
    served = [list(c.token_ids) for c in next(g for g in groups_v1 if g.prompt_id == "p0").completions]
    assert served == [predicted_tokens([1, 5, 6], s, 0, 6, adapter_shift("grpo-lora-v1")) for s in seeds]
    assert served != [predicted_tokens([1, 5, 6], s, 0, 6) for s in seeds]
    # v2: loaded (a leftover of that name unloaded first), then v1 unloaded, all inside one pause
    assert push_v2 == [
        ("/pause_generation", None),
        ("/unload_lora_adapter", "grpo-lora-v2"),
        ("/load_lora_adapter", "grpo-lora-v2"),
        ("/unload_lora_adapter", "grpo-lora-v1"),
        ("/continue_generation", None),
    ]
    assert list(state.lora.loaded) == ["grpo-lora-v2"]
    assert all(torch.equal(state.lora.loaded["grpo-lora-v2"].tensors[n], t) for n, t in second.items())
    later = generate_payloads(server)[len(payloads_v1) :]
    assert later and all(p["lora_path"] == ["grpo-lora-v2"] * 2 for p in later)
    assert {g.policy_version for g in groups_v2} == {2}
    assert not (tmp_path / "w" / "grpo-lora-v1").exists()


def test_a_refused_load_keeps_the_previous_adapter_and_version(
    tiny_model_dir: Path, reward: RewardStandin, tmp_path: Path
) -> None:
    with lora_server() as server:

        async def scenario():
            async with serving(sglang_config(tiny_model_dir, reward, [server.url], tmp_path)) as client:
                await client.stub.UpdateWeights(iter(chunks(adapter(1), 1, spec())), timeout=30)
                server.state.lora.max_rank = 2  # SGLang refuses an adapter above --max-lora-rank
                refused = await refusal(client, chunks(adapter(2), 2, spec()))
                groups = await client.generate(request(PROMPTS, group_size=2))
                return refused, groups, await client.version()

        (code, details), groups, version = run(scenario())
        loaded = list(server.state.lora.loaded)
        last = generate_payloads(server)[-1]
        paths = server.state.paths()
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "--max-lora-rank" in details and "still version 1" in details
    assert version == 1 and {g.policy_version for g in groups} == {1}
    assert loaded == ["grpo-lora-v1"] and last["lora_path"] == ["grpo-lora-v1"] * 2
    assert (tmp_path / "w" / "grpo-lora-v1").is_dir() and not (tmp_path / "w" / "grpo-lora-v2").exists()
    assert paths[-1] == "/generate" and paths.count("/continue_generation") == paths.count(
        "/pause_generation"
    )


@pytest.mark.parametrize(
    ("lora", "named"),
    [
        (spec(rank=0), "rank must be > 0"),
        (spec(alpha=0.0), "alpha must be"),
        (spec(alpha=math.nan), "alpha must be"),
        (spec(target_modules=[]), "target_modules is empty"),
        (spec(target_modules=["q_proj", "q_proj"]), "target_modules[1]"),
        (spec(target_modules=["nope_proj"]), "target_modules ['nope_proj']"),
    ],
    ids=["rank-0", "alpha-0", "alpha-nan", "no-targets", "repeated-target", "unknown-target"],
)
def test_a_bad_adapter_spec_is_refused_naming_the_field(
    tiny_model_dir: Path, reward: RewardStandin, tmp_path: Path, lora, named: str
) -> None:
    with lora_server() as server:

        async def scenario():
            async with serving(sglang_config(tiny_model_dir, reward, [server.url], tmp_path)) as client:
                return await refusal(client, chunks(adapter(1), 1, lora))

        code, details = run(scenario())
        paths = server.state.paths()
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "lora_adapter" in details and named in details
    assert "/load_lora_adapter" not in paths and "/pause_generation" not in paths


def test_streams_that_do_not_match_their_spec_are_refused(
    tiny_model_dir: Path, reward: RewardStandin, tmp_path: Path
) -> None:
    """The spec changes between chunks; a tensor outside target_modules; a shape of another rank."""
    changing = chunks(adapter(1), 1, spec(), bucket_bytes=1024)
    changing[1].lora_adapter.CopyFrom(spec(rank=8))
    outside = chunks(adapter(1), 1, spec(target_modules=["q_proj"]))
    other_rank = chunks(adapter(1, rank=2), 1, spec())
    with lora_server() as server:

        async def scenario():
            async with serving(sglang_config(tiny_model_dir, reward, [server.url], tmp_path)) as client:
                return [await refusal(client, stream) for stream in (changing, outside, other_rank)]

        answers = run(scenario())
        paths = server.state.paths()
    assert all(code == grpc.StatusCode.INVALID_ARGUMENT for code, _ in answers)
    assert "lora_adapter changed inside one stream" in answers[0][1]
    assert "unknown tensor name" in answers[1][1] and "v_proj.lora_A" in answers[1][1]
    assert "shape [2, 32]" in answers[2][1] and "[4, 32]" in answers[2][1]
    assert "/load_lora_adapter" not in paths


def test_a_server_without_enable_lora_refuses_and_the_version_stays(
    tiny_model_dir: Path, reward: RewardStandin, tmp_path: Path
) -> None:
    with StandinServer() as server:  # started without --enable-lora

        async def scenario():
            async with serving(sglang_config(tiny_model_dir, reward, [server.url], tmp_path)) as client:
                refused = await refusal(client, chunks(adapter(1), 1, spec()))
                return refused, await client.version()

        (code, details), version = run(scenario())
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "--enable-lora" in details and version == 0
    assert not (tmp_path / "w" / "grpo-lora-v1").exists()


def test_the_hf_backend_refuses_adapter_streams(tiny_model_dir: Path, reward: RewardStandin) -> None:
    async def scenario():
        async with serving(config(tiny_model_dir, reward.address)) as client:
            refused = await refusal(client, chunks(adapter(1), 1, spec()))
            return refused, await client.version()

    (code, details), version = run(scenario())
    assert code == grpc.StatusCode.INVALID_ARGUMENT and version == 0
    assert "'hf' backend" in details and "send merged weights (push.lora_mode = 'merged')" in details


def test_the_standin_refuses_what_sglang_refuses(tmp_path: Path) -> None:
    """A directory without adapter_config.json, a malformed one, and an unknown lora_path on /generate."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "adapter_config.json").write_text("{not json")
    with lora_server() as server, httpx.Client(base_url=server.url) as http:
        answers = [
            http.post("/load_lora_adapter", json={"lora_name": "a", "lora_path": str(tmp_path / d)})
            for d in ("empty", "bad")
        ]
        generate = http.post(
            "/generate",
            json={
                "input_ids": [1, 2],
                "sampling_params": {"max_new_tokens": 2},
                "return_logprob": True,
                "logprob_start_len": -1,
                "lora_path": "missing",
            },
        )
    assert [a.status_code for a in answers] == [400, 400]
    assert "adapter_config.json not found" in answers[0].json()["error_message"]
    assert "is not JSON" in answers[1].json()["error_message"]
    assert generate.status_code == 400 and "requested LoRA adapters are not loaded" in generate.text


def test_a_full_update_ends_adapter_serving(
    tiny_model_dir: Path, reward: RewardStandin, tmp_path: Path
) -> None:
    """Merged weights after an adapter are the policy: no lora_path any more; the next adapter push
    unloads the stale one."""
    with lora_server() as server:

        async def scenario():
            async with serving(sglang_config(tiny_model_dir, reward, [server.url], tmp_path)) as client:
                await client.stub.UpdateWeights(iter(chunks(adapter(1), 1, spec())), timeout=30)
                full = encode_state_dict(other_weights(tiny_model_dir, 5), 2)
                await client.stub.UpdateWeights(full, timeout=30)
                seen = len(generate_payloads(server))
                merged = await client.generate(request(PROMPTS, group_size=2))
                after_full = generate_payloads(server)[seen:]
                await client.stub.UpdateWeights(iter(chunks(adapter(3), 3, spec())), timeout=30)
                return merged, after_full, await client.generate(request(PROMPTS, group_size=2))

        merged, after_full, adapted = run(scenario())
        loaded = list(server.state.lora.loaded)
        last = generate_payloads(server)[-1]
    assert {g.policy_version for g in merged} == {2} and all("lora_path" not in p for p in after_full)
    assert loaded == ["grpo-lora-v3"] and last["lora_path"] == ["grpo-lora-v3"] * 2
    assert {g.policy_version for g in adapted} == {3}


def test_an_adapter_left_loaded_by_an_earlier_run_is_replaced(
    tiny_model_dir: Path, reward: RewardStandin, tmp_path: Path
) -> None:
    """A restarted service pushes a version whose name SGLang still holds (SGLang refuses to load a
    name twice): the old one is unloaded and the new tensors are served."""
    stale = tmp_path / "stale"
    write_peft_adapter(adapter(9), validate_adapter_spec(spec()), stale, "m")
    with lora_server() as server:
        assert server.state.lora.load({"lora_name": "grpo-lora-v1", "lora_path": str(stale)})[0] == 200

        async def scenario():
            async with serving(sglang_config(tiny_model_dir, reward, [server.url], tmp_path)) as client:
                await client.stub.UpdateWeights(iter(chunks(adapter(1), 1, spec())), timeout=30)
                return await client.version()

        version = run(scenario())
        loaded = server.state.lora.loaded["grpo-lora-v1"]
    assert version == 1 and Path(loaded.path) == tmp_path / "w" / "grpo-lora-v1"
    assert all(torch.equal(loaded.tensors[n], t) for n, t in adapter(1).items())


def test_an_unwritable_weight_dir_is_unavailable_and_nothing_changes(
    tiny_model_dir: Path, reward: RewardStandin, tmp_path: Path
) -> None:
    (tmp_path / "w").write_text("a file where the weight dir should be")
    with lora_server() as server:

        async def scenario():
            async with serving(sglang_config(tiny_model_dir, reward, [server.url], tmp_path)) as client:
                refused = await refusal(client, chunks(adapter(1), 1, spec()))
                return refused, await client.version()

        (code, details), version = run(scenario())
        paths = server.state.paths()
    assert code == grpc.StatusCode.UNAVAILABLE and "could not write the adapter" in details
    assert version == 0 and "/pause_generation" not in paths
