"""RolloutService over real gRPC on loopback: validation, scoring, streaming, limits, weight updates."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from pathlib import Path

import grpc
import pytest
import torch
from grpo.v1 import rollout_pb2, rollout_pb2_grpc
from grpo_common.weights.codec import encode_state_dict
from grpo_rollout.backends.contract import SamplingParams
from grpo_rollout.backends.hf.config import HFConfig
from grpo_rollout.backends.hf.generator import HFGenerator
from rollout_reward_standin import RewardStandin
from rollout_service_harness import config, request, serving, token_prompt
from rollout_testkit import other_weights

GREEDY = {"temperature": 0.0}


@pytest.fixture
def reward():
    standin = RewardStandin().start()
    yield standin
    standin.stop()


def run(coro):
    return asyncio.run(coro)


def test_generate_streams_whole_scored_groups(tiny_model_dir: Path, tokenizer, reward: RewardStandin) -> None:
    prompts = [
        rollout_pb2.Prompt(id="chat", text="What is 3+4?", reference="7"),
        token_prompt("tokens", [1, 10, 11, 12], reference="a"),
    ]
    req = request(prompts, group_size=3, max_new_tokens=8, temperature=1.0, seed=5)
    req.apply_chat_template = True

    async def scenario():
        async with serving(config(tiny_model_dir, reward.address)) as client:
            return await client.generate(req)

    groups = {g.prompt_id: g for g in run(scenario())}
    assert set(groups) == {"chat", "tokens"}
    chat_text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 3+4?"}], add_generation_prompt=True, tokenize=False
    )
    assert (
        list(groups["chat"].prompt_token_ids) == tokenizer(chat_text, add_special_tokens=False)["input_ids"]
    )
    assert list(groups["tokens"].prompt_token_ids) == [1, 10, 11, 12]
    scored = {item.id: item for r in reward.requests for item in r.items}
    for group in groups.values():
        assert len(group.completions) == 3 and group.policy_version == 0
        assert group.generate_seconds > 0 and group.score_seconds > 0
        for j, completion in enumerate(group.completions):
            assert len(completion.token_ids) == len(completion.logprobs) > 0
            assert all(lp <= 0 for lp in completion.logprobs)
            assert completion.finish_reason in (
                rollout_pb2.FINISH_REASON_STOP,
                rollout_pb2.FINISH_REASON_LENGTH,
            )
            assert completion.text == tokenizer.decode(list(completion.token_ids), skip_special_tokens=True)
            item = scored[f"{group.prompt_id}#{j}"]
            assert item.completion == completion.text and item.completion_tokens == len(completion.token_ids)
            assert completion.reward_components["correctness"] == completion.reward
            assert completion.reward_reason in ("reference found", "no final answer found")
    # Both prompts were generated in one batch and scored in one call.
    assert len(reward.requests) == 1 and reward.items_scored == 6


BAD_REQUESTS = {
    "empty prompts": (request([]), "prompts is empty"),
    "group of one": (request([token_prompt("a", [1, 2])], group_size=1), "group_size"),
    "duplicate ids": (request([token_prompt("a", [1, 2]), token_prompt("a", [1, 3])]), r"prompts\[1\]\.id"),
    "no id": (request([token_prompt("", [1, 2])]), r"prompts\[0\]\.id"),
    "text and tokens": (
        request([rollout_pb2.Prompt(id="a", text="hi", token_ids=[1], reference="1")]),
        r"prompts\[0\].*exactly one of text / token_ids",
    ),
    "neither": (request([rollout_pb2.Prompt(id="a", reference="1")]), "exactly one"),
    "no reference": (request([rollout_pb2.Prompt(id="a", text="hi")]), r"prompts\[0\]\.reference"),
    "token outside vocab": (request([token_prompt("a", [1, 10_000])]), r"prompts\[0\]\.token_ids"),
    "negative temperature": (request([token_prompt("a", [1])], temperature=-1), "sampling.temperature"),
    "top_p above one": (request([token_prompt("a", [1])], top_p=1.5), "sampling.top_p"),
    "top_k below -1": (request([token_prompt("a", [1])], top_k=-2), "sampling.top_k"),
    "no new tokens": (request([token_prompt("a", [1])], max_new_tokens=0), "sampling.max_new_tokens"),
    "beyond context": (request([token_prompt("a", [1] * 50)], max_new_tokens=50), "context of 96"),
    "text beyond context, refused untokenised": (
        request([rollout_pb2.Prompt(id="a", text="x" * 5_000_000, reference="1")]),
        r"prompt 'a' of 5000000 characters \(at least \d+ tokens\) exceeds the model's context of 96",
    ),
    "stop id outside vocab": (
        request([token_prompt("a", [1])], stop_token_ids=[999]),
        "sampling.stop_token_ids",
    ),
}


def test_bad_requests_are_refused_naming_the_field(tiny_model_dir: Path, reward: RewardStandin) -> None:
    async def scenario():
        outcomes = {}
        async with serving(config(tiny_model_dir, reward.address)) as client:
            for name, (req, _) in BAD_REQUESTS.items():
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await client.generate(req)
                outcomes[name] = caught.value
            stale = request([token_prompt("a", [1, 2])])
            stale.min_policy_version = 1
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await client.generate(stale)
            outcomes["stale"] = caught.value
        return outcomes

    outcomes = run(scenario())
    for name, (_, pattern) in BAD_REQUESTS.items():
        assert outcomes[name].code() == grpc.StatusCode.INVALID_ARGUMENT, name
        assert re.search(pattern, outcomes[name].details()), (name, outcomes[name].details())
    assert outcomes["stale"].code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "min_policy_version 1" in outcomes["stale"].details()
    assert reward.requests == []  # nothing was generated or scored


def test_reward_service_down_is_unavailable_and_sends_no_group(tiny_model_dir: Path) -> None:
    dead = RewardStandin().start()
    address = dead.address
    dead.stop()

    async def scenario():
        async with serving(config(tiny_model_dir, address)) as client:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                received = []
                async for group in client.stub.Generate(request([token_prompt("a", [1, 2])]), timeout=30):
                    received.append(group)
            return caught.value, received

    error, received = run(scenario())
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert address in error.details() and "no unscored group was sent" in error.details()
    assert received == []


def test_scoring_retries_then_groups_already_sent_stay_and_no_half_group_follows(
    tiny_model_dir: Path, reward: RewardStandin
) -> None:
    reward.fail_next = 1  # the first attempt fails and is retried
    reward.fail_after = 2  # the third call (second batch's retry budget) keeps failing
    prompts = [token_prompt(f"p{i}", [1, 5 + i]) for i in range(3)]

    async def scenario():
        received = []
        async with serving(
            config(tiny_model_dir, reward.address, batch_prompts=1, batches_ahead=1)
        ) as client:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async for group in client.stub.Generate(request(prompts, **GREEDY), timeout=30):
                    received.append(group)
        return caught.value, received

    error, received = run(scenario())
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert [g.prompt_id for g in received] == ["p0"]
    assert all(len(g.completions) == 2 for g in received)


def test_slow_reader_holds_generation_back_and_overload_is_refused(
    tiny_model_dir: Path, reward: RewardStandin
) -> None:
    limits = {"batch_prompts": 1, "batches_ahead": 1, "stream_buffer_groups": 1, "max_in_flight_prompts": 16}
    prompts = [token_prompt(f"p{i}", [1, 5 + i]) for i in range(16)]
    # A client with a small HTTP/2 window, so the transport itself buffers little.
    small_window = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1024)]

    async def scenario():
        async with serving(config(tiny_model_dir, reward.address, **limits), small_window) as client:
            call = client.stub.Generate(request(prompts, group_size=4, max_new_tokens=60), timeout=60)
            received = [await call.read()]
            # Read nothing more; wait until the service stops producing (no new Score call for 1 s).
            loop = asyncio.get_running_loop()
            scored, stable_since, deadline = -1, loop.time(), loop.time() + 30
            while loop.time() < deadline and loop.time() - stable_since < 1.0:
                if len(reward.requests) != scored:
                    scored, stable_since = len(reward.requests), loop.time()
                await asyncio.sleep(0.05)
            info = await client.stub.GetInfo(rollout_pb2.GetInfoRequest())
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await client.generate(request([token_prompt(f"q{i}", [1, 2]) for i in range(8)]))
            while (group := await call.read()) != grpc.aio.EOF:
                received.append(group)
            return received, scored, info, caught.value

    received, scored_while_stalled, info, overload = run(scenario())
    # 1 read + 1 in the transport + 1 queued + 1 waiting to be queued + 1 being generated, at most.
    assert scored_while_stalled <= 6
    assert info.in_flight_requests == 1 and info.in_flight_prompts >= 16 - scored_while_stalled
    assert overload.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit of 16" in overload.details()
    assert sorted(g.prompt_id for g in received) == sorted(p.id for p in prompts)
    assert len(reward.requests) == 16


def greedy_outputs(model_dir: Path, weights: dict[str, torch.Tensor] | None, prompts: list[list[int]]):
    generator = HFGenerator.from_pretrained(model_dir, HFConfig())
    if weights is not None:
        generator.load_weights_sync(weights, 1)
    result = generator.generate_sync(prompts, 1, SamplingParams(max_new_tokens=6, temperature=0.0))
    return [group[0].token_ids for group in result]


def test_weight_update_changes_greedy_outputs_and_the_version(
    tiny_model_dir: Path, reward: RewardStandin
) -> None:
    new = other_weights(tiny_model_dir, seed=3)
    token_prompts = [[1, 5, 6], [1, 7]]
    expected_before = greedy_outputs(tiny_model_dir, None, token_prompts)
    expected_after = greedy_outputs(tiny_model_dir, new, token_prompts)
    assert expected_before != expected_after
    req = request([token_prompt(f"p{i}", p) for i, p in enumerate(token_prompts)], **GREEDY)

    async def scenario():
        async with serving(config(tiny_model_dir, reward.address)) as client:
            before = await client.generate(req)
            answer = await client.stub.UpdateWeights(encode_state_dict(new, 1, bucket_bytes=4096), timeout=30)
            after = await client.generate(req)
            return before, answer, after, await client.version()

    before, answer, after, version = run(scenario())

    def by_id(groups):
        return [list(g.completions[0].token_ids) for g in sorted(groups, key=lambda g: g.prompt_id)]

    assert by_id(before) == expected_before and by_id(after) == expected_after
    assert {g.policy_version for g in before} == {0} and {g.policy_version for g in after} == {1}
    assert answer.policy_version == 1 == version
    assert answer.tensors == len(new) and answer.bytes == sum(t.numel() * 4 for t in new.values())
    assert answer.receive_seconds >= 0 and answer.apply_seconds > 0


def truncated(chunks):
    return [c for c in chunks if not c.last]


def test_bad_weight_updates_are_refused_and_the_model_stays_on_its_weights(
    tiny_model_dir: Path, reward: RewardStandin
) -> None:
    good = other_weights(tiny_model_dir, seed=3)
    cases = {
        "unknown tensor name": encode_state_dict({**good, "model.extra.weight": torch.zeros(3)}, 1),
        "shape": encode_state_dict({**good, "model.norm.weight": torch.zeros(4)}, 1),
        "dtype": encode_state_dict({**good, "model.norm.weight": torch.zeros(32, dtype=torch.float16)}, 1),
        "truncated": truncated(list(encode_state_dict(good, 1, bucket_bytes=4096))),
        "is negative": encode_state_dict(good, -1),
    }
    req = request([token_prompt("p", [1, 5, 6])], **GREEDY)

    async def scenario():
        async with serving(config(tiny_model_dir, reward.address)) as client:
            before = await client.generate(req)
            errors = {}
            for name, chunks in cases.items():
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await client.stub.UpdateWeights(iter(list(chunks)), timeout=30)
                errors[name] = caught.value
            after = await client.generate(req)
            return before, errors, after, await client.version()

    before, errors, after, version = run(scenario())
    for name, error in errors.items():
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, name
        assert name in error.details(), (name, error.details())
    assert version == 0
    assert before[0].completions[0].token_ids == after[0].completions[0].token_ids


def test_an_applied_update_is_copied_so_its_memory_can_receive_the_next(
    tiny_model_dir: Path, reward: RewardStandin
) -> None:
    """The service decodes update n+1 into update n's buffers; the model must own its weights."""
    first, second = other_weights(tiny_model_dir, seed=3), other_weights(tiny_model_dir, seed=4)
    prompts = [[1, 5, 6], [1, 7]]
    expected_first = greedy_outputs(tiny_model_dir, first, prompts)
    expected_second = greedy_outputs(tiny_model_dir, second, prompts)
    assert expected_first != expected_second
    req = request([token_prompt(f"p{i}", p) for i, p in enumerate(prompts)], **GREEDY)

    def outputs(groups):
        return [list(g.completions[0].token_ids) for g in sorted(groups, key=lambda g: g.prompt_id)]

    async def scenario():
        async with serving(config(tiny_model_dir, reward.address)) as client:
            await client.stub.UpdateWeights(encode_state_dict(first, 1), timeout=30)
            # all of `second` but the final chunk: written into the recycled memory, then refused
            with pytest.raises(grpc.aio.AioRpcError):
                await client.stub.UpdateWeights(
                    iter(truncated(list(encode_state_dict(second, 2)))), timeout=30
                )
            after_refused = outputs(await client.generate(req))
            await client.stub.UpdateWeights(encode_state_dict(second, 2), timeout=30)
            return after_refused, outputs(await client.generate(req)), await client.version()

    after_refused, after_second, version = run(scenario())
    assert after_refused == expected_first  # the refused stream's bytes never reached the model
    assert after_second == expected_second and version == 2


def test_a_group_never_straddles_a_weight_update(tiny_model_dir: Path, reward: RewardStandin) -> None:
    new = other_weights(tiny_model_dir, seed=3)
    prompt = [1, 5, 6]
    expected = {
        0: greedy_outputs(tiny_model_dir, None, [prompt])[0],
        1: greedy_outputs(tiny_model_dir, new, [prompt])[0],
    }
    assert expected[0] != expected[1]
    prompts = [token_prompt(f"p{i:02d}", prompt) for i in range(12)]
    limits = {"batch_prompts": 1, "batches_ahead": 1, "stream_buffer_groups": 1}

    async def scenario():
        async with serving(config(tiny_model_dir, reward.address, **limits)) as client:
            call = client.stub.Generate(request(prompts, group_size=3, **GREEDY), timeout=60)
            groups = [await call.read()]
            update = asyncio.ensure_future(client.stub.UpdateWeights(encode_state_dict(new, 1), timeout=30))
            while (group := await call.read()) != grpc.aio.EOF:
                groups.append(group)
            await update
            return groups

    groups = run(scenario())
    assert len(groups) == 12
    versions = [g.policy_version for g in groups]
    assert versions[0] == 0 and versions[-1] == 1  # the update landed in the middle of the stream
    for group in groups:
        outputs = {tuple(c.token_ids) for c in group.completions}
        assert outputs == {tuple(expected[group.policy_version])}, group.prompt_id


def test_get_info_reports_backend_model_and_ids(tiny_model_dir: Path, reward: RewardStandin) -> None:
    async def scenario():
        async with serving(config(tiny_model_dir, reward.address)) as client:
            return await client.stub.GetInfo(rollout_pb2.GetInfoRequest(), timeout=10)

    info = run(scenario())
    assert (info.backend, info.model, info.policy_version) == ("hf", str(tiny_model_dir), 0)
    assert (info.max_context_length, info.eos_token_id, info.pad_token_id) == (96, 2, 0)
    assert info.in_flight_prompts == info.in_flight_requests == 0


def test_with_auth_on_updates_need_the_token(tiny_model_dir: Path, reward: RewardStandin) -> None:
    cfg = config(tiny_model_dir, reward.address)
    cfg.server.auth_token = "s3cret"  # type: ignore[assignment]
    cfg = type(cfg).model_validate(
        cfg.model_dump() | {"server": cfg.server.model_dump() | {"auth_token": "s3cret"}}
    )

    async def scenario():
        async with serving(cfg) as client:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await client.stub.UpdateWeights(
                    encode_state_dict(other_weights(tiny_model_dir, 3), 1), timeout=30
                )
            answer = await client.stub.UpdateWeights(
                encode_state_dict(other_weights(tiny_model_dir, 3), 1),
                timeout=30,
                metadata=(("authorization", "Bearer s3cret"),),
            )
            return caught.value, answer

    error, answer = run(scenario())
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED and answer.policy_version == 1


def test_sglang_backend_behind_the_service_carries_versions_and_updates_every_worker(
    tiny_model_dir: Path, tmp_path: Path, reward: RewardStandin
) -> None:
    from rollout_sglang_standin import StandinServer

    with StandinServer() as a, StandinServer() as b:
        cfg = config(tiny_model_dir, reward.address)
        cfg = type(cfg).model_validate(
            cfg.model_dump()
            | {"generator": "sglang", "sglang": {"urls": [a.url, b.url], "weight_dir": str(tmp_path / "w")}}
        )
        prompts = [token_prompt(f"p{i}", [1, 5 + i]) for i in range(4)]

        async def scenario():
            async with serving(cfg) as client:
                before = await client.generate(request(prompts, group_size=3))
                answer = await client.stub.UpdateWeights(
                    encode_state_dict(other_weights(tiny_model_dir, 3), 1), timeout=30
                )
                b.state.fail_updates = True
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await client.stub.UpdateWeights(
                        encode_state_dict(other_weights(tiny_model_dir, 4), 2), timeout=30
                    )
                after = await client.generate(request(prompts, group_size=3))
                info = await client.stub.GetInfo(rollout_pb2.GetInfoRequest(), timeout=10)
                return before, answer, refused.value, after, info

        before, answer, refused, after, info = run(scenario())
    assert {g.policy_version for g in before} == {0} and {g.policy_version for g in after} == {1}
    assert all(len(g.completions) == 3 for g in before + after)
    assert answer.policy_version == 1
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT and "still version 1" in refused.details()
    assert (info.backend, info.policy_version) == ("sglang", 1)
    for server in (a, b):
        versions = [
            body["weight_version"] for p, body in server.state.calls if p == "/update_weights_from_disk"
        ]
        assert versions[0] == "1"
    assert a.state.weight_version == "1"  # rolled back after b refused version 2


def test_a_resumed_learner_may_set_a_lower_version(tiny_model_dir: Path, reward: RewardStandin) -> None:
    """The learner owns the numbering: after it resumes from an earlier checkpoint it pushes that
    checkpoint's (lower) version, and the service must serve those weights under that version."""
    new = other_weights(tiny_model_dir, seed=3)
    req = request([token_prompt("p", [1, 5, 6])], **GREEDY)

    async def scenario():
        async with serving(config(tiny_model_dir, reward.address)) as client:
            await client.stub.UpdateWeights(encode_state_dict(new, 5), timeout=30)
            ahead = await client.version()
            answer = await client.stub.UpdateWeights(encode_state_dict(new, 2), timeout=30)
            groups = await client.generate(req)
            return ahead, answer.policy_version, await client.version(), groups

    ahead, answered, version, groups = run(scenario())
    assert (ahead, answered, version) == (5, 2, 2)
    assert groups[0].policy_version == 2


def test_a_partial_request_continues_across_an_update_and_records_every_tokens_version(
    tiny_model_dir: Path, reward: RewardStandin
) -> None:
    """v1.4 over real gRPC: an UpdateWeights stream sent when the batch has sampled 2 tokens is
    applied at the next token boundary, without waiting for the batch; the group then carries each
    completion's token_versions (version 0, then 1), its policy_version is the oldest token's, and
    the update's reply came while the completions were still being generated."""
    new = other_weights(tiny_model_dir, seed=3)
    prompts = [token_prompt("p0", [1, 5, 6])]
    replies: list[rollout_pb2.UpdateWeightsResponse] = []

    async def scenario():
        async with serving(config(tiny_model_dir, reward.address)) as client:
            generator = client.rollout.generator
            forwards = 0
            pushes: list[threading.Thread] = []

            def push() -> None:  # a learner's push over its own channel, as a real one is
                async def send() -> None:
                    async with grpc.aio.insecure_channel(client.rollout.server.address) as channel:
                        stub = rollout_pb2_grpc.RolloutServiceStub(channel)
                        replies.append(await stub.UpdateWeights(encode_state_dict(new, 1), timeout=60))

                asyncio.run(send())

            def push_at_third_forward(module, args, kwargs) -> None:
                nonlocal forwards
                forwards += 1
                if forwards == 3:  # prefill, then the decode steps of tokens 0 and 1: 2 sampled
                    pushes.append(threading.Thread(target=push))
                    pushes[0].start()
                    while generator._updates_waiting == 0 and pushes[0].is_alive():
                        time.sleep(0.001)

            hook = generator.model.register_forward_pre_hook(push_at_third_forward, with_kwargs=True)
            partial = request(prompts, group_size=3, max_new_tokens=24, temperature=1.0, seed=11)
            partial.partial = True
            try:
                groups = await client.generate(partial)
            finally:
                hook.remove()
                for thread in pushes:
                    await asyncio.to_thread(thread.join)
            return groups, forwards

    groups, forwards = run(scenario())
    assert len(replies) == 1 and replies[0].policy_version == 1
    [group] = groups
    assert group.policy_version == 0  # the oldest token's version
    spans = [[(s.policy_version, s.tokens) for s in c.token_versions] for c in group.completions]
    for completion, runs in zip(group.completions, spans, strict=True):
        assert sum(tokens for _, tokens in runs) == len(completion.token_ids)
        assert runs[0] == (0, min(2, len(completion.token_ids)))  # tokens 0 and 1 came before
    assert any(len(runs) == 2 and runs[1][0] == 1 for runs in spans), spans
    assert forwards > 3  # generation went on after the update
