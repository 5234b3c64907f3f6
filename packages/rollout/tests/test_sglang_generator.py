"""The sglang backend (the real HTTP client) against a stand-in server with SGLang's payloads."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import pytest
import torch
from grpo_common.config import ConfigError
from grpo_rollout.backends.contract import FinishReason, GenerationError, SamplingParams, WeightUpdateError
from grpo_rollout.backends.sglang.config import SGLangConfig
from grpo_rollout.backends.sglang.generator import SGLangGenerator, sync_ranks_of
from grpo_rollout.backends.sglang.http import SGLangError, SGLangServer
from grpo_rollout.backends.sglang.launcher import LaunchSettings, SGLangProcess, launch_command
from grpo_rollout.backends.sglang.lora import write_peft_adapter
from grpo_rollout.backends.sglang.model_facts import read_model_facts
from grpo_rollout.backends.sglang.payloads import (
    SGLangProtocolError,
    group_request,
    parse_output,
    parse_weight_version,
    sequence_seed,
)
from grpo_rollout.cli import build_parser, config_from_args
from grpo_rollout.lora_adapters import AdapterSpec
from rollout_sglang_standin import StandinServer, predicted_logprob, predicted_tokens
from rollout_testkit import other_weights

PROMPTS = [[1, 5, 6, 7], [1, 20, 21]]


def run(coro):
    return asyncio.run(coro)


async def connect(model_dir: Path, urls: list[str], tmp_path: Path, **kwargs) -> SGLangGenerator:
    settings = SGLangConfig(urls=urls, weight_dir=tmp_path / "weights", **kwargs)
    return await SGLangGenerator.connect(str(model_dir), read_model_facts(model_dir), urls, settings)


def test_request_uses_sglang_keys_and_a_distinct_seed_per_sequence() -> None:
    sampling = SamplingParams(max_new_tokens=8, temperature=0.7, top_p=0.9, stop_token_ids=(2,), seed=5)
    request = group_request([1, 2, 3], prompt_index=1, n=3, sampling=sampling)
    assert request["input_ids"] == [[1, 2, 3]] * 3
    assert request["return_logprob"] is True and request["logprob_start_len"] == -1
    params = request["sampling_params"]
    assert [p["sampling_seed"] for p in params] == [sequence_seed(5, 1, 3, j) for j in range(3)]
    assert len({p["sampling_seed"] for p in params}) == 3
    assert params[0] == {
        "max_new_tokens": 8,
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": -1,
        "stop_token_ids": [2],
        "sampling_seed": params[0]["sampling_seed"],
    }
    unseeded = group_request([1], 0, 2, SamplingParams(max_new_tokens=4))
    assert all("sampling_seed" not in p and "seed" not in p for p in unseeded["sampling_params"])


def output(ids, logprobs, finish, version="3"):
    entries = [[lp, t, None] for lp, t in zip(logprobs, ids, strict=False)]
    return {
        "output_ids": ids,
        "meta_info": {"finish_reason": finish, "weight_version": version, "output_token_logprobs": entries},
    }


def test_output_parsing_reads_logprob_at_index_0_and_each_finish_reason() -> None:
    parsed = parse_output(output([4, 2], [-0.5, -1.5], {"type": "stop", "matched": 2}))
    assert (parsed.token_ids, parsed.logprobs) == ([4, 2], [-0.5, -1.5])
    assert parsed.finish_reason is FinishReason.STOP and parsed.weight_version == 3
    assert (
        parse_output(output([4], [-1.0], {"type": "length", "length": 1})).finish_reason
        is FinishReason.LENGTH
    )
    aborted = parse_output(output([4], [-1.0], {"type": "abort", "message": "aborted"}))
    assert aborted.finish_reason is FinishReason.ABORT


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (output([4, 5], [-0.5], {"type": "stop"}), "pair up"),
        ({**output([4], [-0.5], {"type": "stop"}), "output_ids": [9]}, "token 4"),
        (output([4], [-0.5], None), "finish_reason"),
        (output([4], [0.5], {"type": "stop"}), "not a logprob"),
        (output([4], [-0.5], {"type": "stop"}, version="v7"), "not an integer"),
        ({"output_ids": [1]}, "lacks"),
    ],
)
def test_malformed_outputs_are_refused(bad: dict, message: str) -> None:
    with pytest.raises(SGLangProtocolError, match=message):
        parse_output(bad)


def spans(*triples):
    return [{"version": v, "start": a, "end": b} for v, a, b in triples]


def test_sglang_weight_version_spans_become_runs_and_the_oldest_is_the_completions_version() -> None:
    """SGLang 0.5.23 reports the versions over the output tokens and weight_version = the newest."""
    straddling = output([4, 5, 6], [-0.5] * 3, {"type": "length", "length": 3}, version="8")
    straddling["meta_info"]["weight_versions"] = spans(("7", 0, 2), ("8", 2, 3))
    parsed = parse_output(straddling)
    assert parsed.version_runs == ((7, 2), (8, 1)) and parsed.weight_version == 7


@pytest.mark.parametrize(
    ("weight_versions", "message"),
    [
        (spans(("7", 0, 2)), "cover 2 tokens for 3"),
        (spans(("7", 1, 3)), "in order"),
        (spans(("7", 0, 1), ("8", 2, 3)), "in order"),
        ([{"version": "7"}], "malformed"),
    ],
)
def test_weight_version_spans_that_do_not_cover_the_tokens_are_refused(weight_versions, message) -> None:
    bad = output([4, 5, 6], [-0.5] * 3, {"type": "length", "length": 3})
    bad["meta_info"]["weight_versions"] = weight_versions
    with pytest.raises(SGLangProtocolError, match=message):
        parse_output(bad)


def test_default_weight_version_is_zero() -> None:
    assert parse_weight_version("default") == 0 and parse_weight_version("12") == 12


def test_generate_round_robins_workers_and_returns_what_sglang_sampled(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    with StandinServer() as a, StandinServer() as b:

        async def scenario():
            generator = await connect(tiny_model_dir, [a.url, b.url], tmp_path)
            stop = predicted_tokens(PROMPTS[0], sequence_seed(11, 0, 3, 1), 0, 6)[2]
            sampling = SamplingParams(max_new_tokens=6, stop_token_ids=(stop,), seed=11)
            try:
                return await generator.generate(PROMPTS, 3, sampling), stop
            finally:
                await generator.close()

        result, stop = run(scenario())
        for i, (prompt, group) in enumerate(zip(PROMPTS, result, strict=True)):
            assert len(group) == 3
            for j, completion in enumerate(group):
                full = predicted_tokens(prompt, sequence_seed(11, i, 3, j), 0, 6)
                if stop in full:
                    assert completion.token_ids == full[: full.index(stop) + 1]
                    assert completion.finish_reason is FinishReason.STOP
                else:
                    assert completion.token_ids == full
                    assert completion.finish_reason is FinishReason.LENGTH
                assert completion.logprobs == [predicted_logprob(k) for k in range(len(completion.token_ids))]
                assert completion.weight_version == 0
        assert result[0][1].finish_reason is FinishReason.STOP
        assert "/generate" in a.state.paths() and "/generate" in b.state.paths()


def test_router_receives_generate_and_workers_receive_updates(tiny_model_dir: Path, tmp_path: Path) -> None:
    with StandinServer() as worker, StandinServer() as router:

        async def scenario():
            generator = await connect(tiny_model_dir, [worker.url], tmp_path, router_url=router.url)
            try:
                await generator.generate(PROMPTS, 2, SamplingParams(max_new_tokens=3))
                await generator.load_weights(other_weights(tiny_model_dir, 1), version=1)
            finally:
                await generator.close()

        run(scenario())
        assert "/generate" in router.state.paths() and "/generate" not in worker.state.paths()
        assert "/update_weights_from_disk" in worker.state.paths()
        assert "/update_weights_from_disk" not in router.state.paths()


def test_update_pauses_updates_with_version_continues_and_new_samples_carry_it(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    with StandinServer() as a, StandinServer() as b:

        async def scenario():
            generator = await connect(tiny_model_dir, [a.url, b.url], tmp_path)
            try:
                await generator.load_weights(other_weights(tiny_model_dir, 1), version=4)
                after = await generator.generate(PROMPTS, 2, SamplingParams(max_new_tokens=4))
                return after, generator.info().weight_version
            finally:
                await generator.close()

        after, version = run(scenario())
        assert version == 4
        for server in (a, b):
            control = [
                (p, body)
                for p, body in server.state.calls
                if p not in ("/health", "/get_model_info", "/get_server_info")
            ]
            assert [p for p, _ in control][:3] == [
                "/pause_generation",
                "/update_weights_from_disk",
                "/continue_generation",
            ]
            update = control[1][1]
            assert update["weight_version"] == "4" and update["flush_cache"] is True
            assert update["abort_all_requests"] is False
            assert Path(update["model_path"]).name == "v4"
            assert "model.norm.weight" in server.state.loaded_names
        assert all(c.weight_version == 4 for g in after for c in g)
        assert after[0][0].token_ids == predicted_tokens(PROMPTS[0], 0, 4, 4)


def test_a_partial_call_stays_in_flight_across_an_update_and_reports_each_tokens_version(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Partial (v1.4): the update does not wait for the call (a call under the gate would keep it
    out until the stand-in gives up holding, and finish on version 0 alone); the workers are paused
    with "retract" (the configured "abort" would end the call), and SGLang's weight_versions spans
    become the completion's runs: 3 tokens of version 0, then version 1's tokens for the input so
    far."""
    with StandinServer() as server:
        server.state.hold_after_tokens = 3

        async def scenario():
            generator = await connect(tiny_model_dir, [server.url], tmp_path)
            sampling = SamplingParams(max_new_tokens=8, seed=2, partial=True)
            try:
                call = asyncio.ensure_future(generator.generate([PROMPTS[0]], 2, sampling))
                await asyncio.to_thread(server.state.held.wait, 10)
                await generator.load_weights(other_weights(tiny_model_dir, 1), 1)
                return await call
            finally:
                await generator.close()

        groups = run(scenario())
        [completion, _] = groups[0]
        pauses = [body["mode"] for path, body in server.state.calls if path == "/pause_generation"]
    assert pauses == ["retract"]
    assert completion.version_runs == ((0, 3), (1, 5)) and completion.weight_version == 0
    seed = sequence_seed(2, 0, 2, 0)
    old = predicted_tokens(PROMPTS[0], seed, 0, 3)
    assert completion.token_ids == old + predicted_tokens(PROMPTS[0] + old, seed, 1, 5)


def test_a_refused_update_rolls_back_and_keeps_the_old_version(tiny_model_dir: Path, tmp_path: Path) -> None:
    with StandinServer() as good, StandinServer() as bad:
        bad.state.fail_updates = True

        async def scenario():
            generator = await connect(tiny_model_dir, [good.url, bad.url], tmp_path)
            try:
                with pytest.raises(WeightUpdateError, match="shape mismatch"):
                    await generator.load_weights(other_weights(tiny_model_dir, 1), version=1)
                return generator.info().weight_version
            finally:
                await generator.close()

        assert run(scenario()) == 0
        updates = [body for p, body in good.state.calls if p == "/update_weights_from_disk"]
        assert [u["weight_version"] for u in updates] == ["1", "0"]  # applied, then rolled back
        assert updates[-1]["model_path"] == str(tiny_model_dir)
        for server in (good, bad):
            assert server.state.paths()[-1] == "/continue_generation" and not server.state.paused


def test_bad_tensors_are_refused_before_any_server_call(tiny_model_dir: Path, tmp_path: Path) -> None:
    with StandinServer() as server:

        async def scenario():
            generator = await connect(tiny_model_dir, [server.url], tmp_path)
            try:
                weights = other_weights(tiny_model_dir, 1)
                weights["model.norm.weight"] = torch.zeros(5)
                with pytest.raises(WeightUpdateError, match=r"model\.norm\.weight.*shape"):
                    await generator.load_weights(weights, version=1)
            finally:
                await generator.close()

        run(scenario())
        assert "/pause_generation" not in server.state.paths()


def test_aborted_sequences_come_back_marked_abort(tiny_model_dir: Path, tmp_path: Path) -> None:
    with StandinServer() as server:
        server.state.abort_next = 1

        async def scenario():
            generator = await connect(tiny_model_dir, [server.url], tmp_path)
            try:
                return await generator.generate([PROMPTS[0]], 2, SamplingParams(max_new_tokens=6))
            finally:
                await generator.close()

        [group] = run(scenario())
        assert [c.finish_reason for c in group] == [FinishReason.ABORT, FinishReason.LENGTH]
        assert len(group[0].token_ids) == 3 == len(group[0].logprobs)


def test_unhealthy_server_fails_connect_and_a_dead_one_fails_generate(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    with StandinServer() as server:
        server.state.healthy = False
        with pytest.raises(SGLangError, match="not healthy"):
            run(connect(tiny_model_dir, [server.url], tmp_path, health_timeout_s=0.5))

    with StandinServer() as server:

        async def scenario():
            generator = await connect(tiny_model_dir, [server.url], tmp_path)
            server.__exit__()
            try:
                await generator.generate(PROMPTS, 2, SamplingParams(max_new_tokens=3))
            finally:
                await generator.close()

        with pytest.raises(GenerationError, match="cannot reach SGLang"):
            run(scenario())


def test_distributed_update_sends_the_request_before_the_broadcast(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    with StandinServer() as a, StandinServer() as b:
        a.state.tp_size = 2  # a takes ranks 1-2, b rank 3

        async def scenario():
            generator = await connect(tiny_model_dir, [a.url, b.url], tmp_path)
            try:
                ranks = await generator.init_weights_update_group(
                    "10.0.0.1", 29500, rank_offset=1, world_size=4, group_name="g"
                )
                update = await generator.begin_distributed_update(version=2, group_name="g")
                receiving = asyncio.create_task(
                    update.receive_bucket(["model.norm.weight"], ["float32"], [[32]], last=True)
                )

                def broadcast() -> list[bool]:
                    # A real trainer calls dist.broadcast here; the engines must already be listening.
                    seen = []
                    for server in (a, b):
                        for _ in range(200):
                            if "/update_weights_from_distributed" in server.state.paths():
                                break
                            threading.Event().wait(0.01)
                        seen.append("/update_weights_from_distributed" in server.state.paths())
                        server.state.broadcast_done.set()
                    return seen

                seen = await asyncio.to_thread(broadcast)
                await receiving
                return ranks, seen, generator.info().weight_version, generator.weight_sync_group()
            finally:
                await generator.close()

        ranks, seen, version, group = run(scenario())
        assert ranks == 3 and seen == [True, True] and version == 2 and group == "g"
        inits = [
            body for server in (a, b) for p, body in server.state.calls if p == "/init_weights_update_group"
        ]
        assert [i["rank_offset"] for i in inits] == [1, 3] and {i["world_size"] for i in inits} == {4}
        for server in (a, b):
            paths = [
                p
                for p in server.state.paths()
                if p.startswith(("/pause", "/update", "/continue", "/init", "/destroy"))
            ]
            assert paths == [
                "/destroy_weights_update_group",  # a group left by an earlier learner goes first
                "/init_weights_update_group",
                "/pause_generation",
                "/update_weights_from_distributed",
                "/continue_generation",
            ]
            [body] = [body for p, body in server.state.calls if p == "/update_weights_from_distributed"]
            assert body["names"] == ["model.norm.weight"] and body["weight_version"] == "2"
            assert body["dtypes"] == ["float32"] and body["shapes"] == [[32]] and body["group_name"] == "g"


def test_only_the_last_bucket_carries_the_version_and_flushes_the_cache(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    with StandinServer() as server:

        async def scenario():
            generator = await connect(tiny_model_dir, [server.url], tmp_path)
            try:
                await generator.init_weights_update_group("10.0.0.1", 29500, 1, 2, "weight_update_group")
                update = await generator.begin_distributed_update(version=5)
                versions = []
                for last in (False, True):
                    receiving = asyncio.create_task(
                        update.receive_bucket(["model.norm.weight"], ["bfloat16"], [[32]], last=last)
                    )
                    while "/update_weights_from_distributed" not in server.state.paths()[-1:]:
                        await asyncio.sleep(0.01)
                    server.state.broadcast_done.set()
                    await receiving
                    versions.append(generator.info().weight_version)
                return versions
            finally:
                await generator.close()

        assert run(scenario()) == [0, 5]
        bodies = [body for p, body in server.state.calls if p == "/update_weights_from_distributed"]
        assert ["weight_version" in b for b in bodies] == [False, True]
        assert [b["flush_cache"] for b in bodies] == [False, True]
        assert server.state.paths().count("/pause_generation") == 1
        assert server.state.paths()[-1] == "/continue_generation"


def test_a_worker_that_cannot_join_groups_makes_the_backend_report_zero_ranks(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    assert sync_ranks_of({"tp_size": 4, "dp_size": 1}) == 4
    assert sync_ranks_of({"tp_size": 2, "dp_size": 2}) == 0  # SGLang refuses DP without DP attention
    assert sync_ranks_of({"tp_size": 4, "dp_size": 2, "enable_dp_attention": True}) == 4
    assert sync_ranks_of({"tp_size": 2, "pp_size": 2}) == 0
    with StandinServer() as a, StandinServer() as b:
        b.state.tp_size = 3

        async def scenario():
            generator = await connect(tiny_model_dir, [a.url, b.url], tmp_path)
            try:
                return generator.weight_sync_ranks()
            finally:
                await generator.close()

        assert run(scenario()) == 4


def standin_as_sglang_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `python -m sglang.launch_server` resolve to the stand-in through PYTHONPATH."""
    package = tmp_path / "sglang"
    package.mkdir()
    (package / "__init__.py").write_text("")
    standin = Path(__file__).with_name("rollout_sglang_standin.py")
    (package / "launch_server.py").write_text(  # as `python standin.py`: its directory on sys.path
        f"import runpy, sys\nsys.path.insert(0, {str(standin.parent)!r})\n"
        f"runpy.run_path({str(standin)!r}, run_name='__main__')\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))


def test_launcher_starts_the_server_module_and_waits_for_health(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    standin_as_sglang_module(tmp_path, monkeypatch)
    process = SGLangProcess(
        LaunchSettings(model_path="m", sglang=SGLangConfig(), log_file=tmp_path / "sglang.log")
    )

    async def scenario():
        url = await process.start(timeout_s=60)
        import httpx

        async with httpx.AsyncClient() as client:
            info = (await client.get(url + "/get_model_info")).json()
        return url, info

    try:
        url, info = run(scenario())
        assert url == process.url and process.alive()
        assert info == {"model_path": "m", "weight_version": "0"}  # launched with --weight-version 0
    finally:
        process.stop()
    assert not process.alive()


def test_lora_flags_launch_sglang_with_lora_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--sglang-lora-rank/--sglang-lora-target-module -> --enable-lora --max-lora-rank
    --lora-target-modules on the launched server, which then loads a peft adapter directory."""
    args = ["serve", "--model", "m", "--generator", "sglang", "--reward-address", "r:1"]
    lora = ["--sglang-lora-rank", "8", "--sglang-lora-target-module", "q_proj"]
    lora += ["--sglang-lora-target-module", "v_proj"]
    config = config_from_args(build_parser().parse_args(args + lora))
    settings = LaunchSettings.of("m", config.sglang)
    command = launch_command(settings, 1234)
    assert command[command.index("--enable-lora") :][:6] == [
        "--enable-lora",
        "--max-lora-rank",
        "8",
        "--lora-target-modules",
        "q_proj",
        "v_proj",
    ]
    assert "--enable-lora" not in launch_command(
        LaunchSettings.of("m", config_from_args(build_parser().parse_args(args)).sglang), 1234
    )
    with pytest.raises(ConfigError, match="lora_target_modules"):
        config_from_args(build_parser().parse_args([*args, "--sglang-lora-rank", "8"]))

    standin_as_sglang_module(tmp_path, monkeypatch)
    adapter_dir = tmp_path / "adapter"
    tensors = {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(8, 4)}
    write_peft_adapter(tensors, AdapterSpec(8, 16.0, ("q_proj",)), adapter_dir, "m")
    settings.log_file = tmp_path / "sglang.log"
    process = SGLangProcess(settings)

    async def scenario():
        url = await process.start(timeout_s=60)
        async with httpx.AsyncClient() as client:
            return await SGLangServer(url, client).load_lora_adapter("a", str(adapter_dir))

    try:
        run(scenario())  # raises SGLangRefused unless the server runs with LoRA on
    finally:
        process.stop()
