"""Malformed bodies to every method of every service, from the descriptors, against real processes.

`grpo-reward serve` and `grpo-rollout serve` run as real processes with auth on. Every method that
grpo.v1's descriptors list gets bytes protobuf cannot decode (truncated varints, lengths past the
end, an invalid wire type) and, where its input has a string field, a well-formed message whose
string holds invalid UTF-8. Each must answer INVALID_ARGUMENT (never UNKNOWN) with a message that
says what is wrong, and both services must still serve afterwards. A method added to the proto
is covered without touching this file.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from grpo.v1 import reward_pb2, reward_pb2_grpc, rollout_pb2, rollout_pb2_grpc
from grpo_common.channel import ChannelConfig, create_channel
from grpo_learner.embedded.model import build_tiny_model
from grpo_learner.embedded.tokenizer import build_tokenizer
from grpo_learner.local.service_processes import ServiceProcess, find_executable, start_service

pytestmark = pytest.mark.slow

TOKEN = "hostile-requests-test-token"
GARBAGE = {
    "truncated varint": b"\x08\xff\xff\xff",
    "length past the end": b"\x0a\x7fabc",
    "invalid wire type": b"\x0f\x01\x02",
}


PLACEHOLDER = "TEXT-TO-BREAK"


def _fill_first_string(message: Message, depth: int = 0) -> str | None:
    """Set the first reachable string field of `message` to PLACEHOLDER; return that field's name."""
    for field in message.DESCRIPTOR.fields:
        if field.type == FieldDescriptor.TYPE_STRING:
            target = getattr(message, field.name)
            if field.is_repeated:
                target.append(PLACEHOLDER)
            else:
                setattr(message, field.name, PLACEHOLDER)
            return field.name
    for field in message.DESCRIPTOR.fields:
        if (
            field.type == FieldDescriptor.TYPE_MESSAGE
            and depth < 3
            and not field.message_type.GetOptions().map_entry
        ):
            inner = getattr(message, field.name)
            child = inner.add() if field.is_repeated else inner
            name = _fill_first_string(child, depth + 1)
            if name is not None:
                return name
            message.ClearField(field.name)
    return None


def invalid_utf8_body(descriptor: Descriptor) -> tuple[bytes, str] | None:
    """A well-formed message whose first reachable string field holds invalid UTF-8, and its name."""
    message = message_factory.GetMessageClass(descriptor)()
    name = _fill_first_string(message)
    if name is None:
        return None
    body = message.SerializeToString().replace(
        PLACEHOLDER.encode(), b"ok\xff\xfe" + b"x" * (len(PLACEHOLDER) - 4)
    )
    return body, name


def all_methods() -> Iterator[MethodDescriptor]:
    for module in (reward_pb2, rollout_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            yield from service.methods


def bodies(method: MethodDescriptor) -> dict[str, tuple[bytes, str | None]]:
    """name -> (body, the field name the refusal should mention, if any)."""
    cases: dict[str, tuple[bytes, str | None]] = {name: (body, None) for name, body in GARBAGE.items()}
    utf8 = invalid_utf8_body(method.input_type)
    if utf8 is not None:
        cases["invalid UTF-8"] = utf8
    return cases


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServiceProcess]]:
    root = tmp_path_factory.mktemp("hostile")
    tokenizer = build_tokenizer()
    build_tiny_model(tokenizer, seed=0).save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    env = {"GRPO_AUTH_TOKEN": TOKEN}
    reward = start_service(
        "reward", [find_executable("grpo-reward"), "serve", "--workers", "1"], root, env=env
    )
    started = {"grpo.v1.RewardService": reward}
    try:
        started["grpo.v1.RolloutService"] = start_service(
            "rollout",
            [find_executable("grpo-rollout"), "serve", "--model", str(root / "model"),
             "--torch-threads", "1", "--reward-address", reward.address],
            root,
            env=env,
        )  # fmt: skip
        yield started
    finally:
        for service in reversed(started.values()):
            service.stop(timeout_s=5)


async def send(address: str, method: MethodDescriptor, body: bytes) -> grpc.aio.AioRpcError | None:
    path = f"/{method.containing_service.full_name}/{method.name}"
    kind = (
        ("stream" if method.client_streaming else "unary")
        + "_"
        + ("stream" if method.server_streaming else "unary")
    )
    async with create_channel(address, ChannelConfig(auth_token=TOKEN)) as channel:
        call = getattr(channel, kind)(path, request_serializer=None, response_deserializer=None)
        request = iter([body]) if method.client_streaming else body
        try:
            if method.server_streaming:
                async for _ in call(request, timeout=30):
                    pass
            else:
                await call(request, timeout=30)
        except grpc.aio.AioRpcError as error:
            return error
    return None


def test_every_method_answers_malformed_bodies_with_invalid_argument(
    services: dict[str, ServiceProcess],
) -> None:
    methods = list(all_methods())
    assert {m.containing_service.full_name for m in methods} == set(services)
    assert (
        len(methods) >= 6
    )  # Score, Generate, UpdateWeights, GetInfo, InitWeightSync, UpdateWeightsDistributed

    async def scenario():
        answers = {}
        for method in methods:
            address = services[method.containing_service.full_name].address
            for name, (body, _) in bodies(method).items():
                answers[method.full_name, name] = await send(address, method, body)
        return answers

    answers = asyncio.run(scenario())
    for method in methods:
        for name, (_, field) in bodies(method).items():
            error = answers[method.full_name, name]
            where = (method.full_name, name)
            assert error is not None, f"{where}: accepted"
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (where, error.code(), error.details())
            assert "Unexpected" not in error.details() and "Traceback" not in error.details(), where
            if field is not None:
                assert field in error.details() and "UTF-8" in error.details(), (where, error.details())
            else:
                assert "malformed" in error.details(), (where, error.details())
    assert_still_serving(services)


def assert_still_serving(services: dict[str, ServiceProcess]) -> None:
    async def check():
        config = ChannelConfig(auth_token=TOKEN)
        async with create_channel(services["grpo.v1.RewardService"].address, config) as channel:
            item = reward_pb2.ScoreItem(id="a", completion="The answer is \\boxed{7}.", reference="7")
            scored = await reward_pb2_grpc.RewardServiceStub(channel).Score(
                reward_pb2.ScoreRequest(items=[item]), timeout=30
            )
        async with create_channel(services["grpo.v1.RolloutService"].address, config) as channel:
            stub = rollout_pb2_grpc.RolloutServiceStub(channel)
            info = await stub.GetInfo(rollout_pb2.GetInfoRequest(), timeout=30)
            request = rollout_pb2.RolloutRequest(
                prompts=[rollout_pb2.Prompt(id="p", text="1+1=", reference="2")],
                group_size=2,
                sampling=rollout_pb2.SamplingParams(max_new_tokens=4),
            )
            groups = [group async for group in stub.Generate(request, timeout=60)]
        return scored, info, groups

    scored, info, groups = asyncio.run(check())
    assert scored.results[0].correct
    assert info.policy_version == 0
    assert len(groups) == 1 and len(groups[0].completions) == 2
    for service in services.values():
        assert service.process.poll() is None, f"{service.name} died"
        assert "Traceback" not in Path(service.log_path).read_text(), json.dumps(service.name)


HUGE = "é" * 200_000  # 400 KB of UTF-8; gRPC percent-encodes it to 1.2 MB if it reaches a status


def valid_requests() -> dict[str, Message]:
    """A request each content-bearing method accepts, to put huge values into field by field."""
    score = reward_pb2.ScoreRequest(
        items=[reward_pb2.ScoreItem(id="a", completion="The answer is \\boxed{7}.", reference="7")],
        spec=reward_pb2.RewardSpec(components=[reward_pb2.RewardComponent(name="format")]),
    )
    generate = rollout_pb2.RolloutRequest(
        prompts=[rollout_pb2.Prompt(id="p", text="1+1=", reference="2")],
        group_size=2,
        sampling=rollout_pb2.SamplingParams(max_new_tokens=4),
        environment=rollout_pb2.EnvironmentSpec(name="calculator"),
    )
    return {"grpo.v1.RewardService.Score": score, "grpo.v1.RolloutService.Generate": generate}


def with_huge_strings(message: Message, prefix: str = "") -> Iterator[tuple[str, Message]]:
    """(field path, a copy of `message` with that one string field set to HUGE), for every string
    field reachable through singular and first-element repeated messages."""
    for field in message.DESCRIPTOR.fields:
        path = f"{prefix}{field.name}"
        if field.type == FieldDescriptor.TYPE_STRING and not field.is_repeated:
            copy = type(message)()
            copy.CopyFrom(message)
            setattr(copy, field.name, HUGE)
            yield path, copy
        elif field.type == FieldDescriptor.TYPE_MESSAGE and not field.message_type.GetOptions().map_entry:
            if field.is_repeated:
                if not len(getattr(message, field.name)):
                    continue
                inner, path = getattr(message, field.name)[0], f"{path}[0]"
            else:
                inner = getattr(message, field.name)
            for inner_path, changed in with_huge_strings(inner, f"{path}."):
                copy = type(message)()
                copy.CopyFrom(message)
                target = getattr(copy, field.name)
                (target[0] if field.is_repeated else target).CopyFrom(changed)
                yield inner_path, copy


def test_a_huge_value_in_any_string_field_gets_a_status_that_arrives(
    services: dict[str, ServiceProcess],
) -> None:
    # A refusal that quotes the value must still reach the caller: never RESOURCE_EXHAUSTED
    # "Stream removed" (a status message over gRPC's metadata limit), never UNKNOWN or INTERNAL.
    methods = {m.full_name: m for m in all_methods()}
    cases = [
        (name, path, message)
        for name, request in valid_requests().items()
        for path, message in with_huge_strings(request)
    ]
    assert len(cases) >= 12

    async def scenario():
        answers = []
        for name, path, message in cases:
            method = methods[name]
            address = services[method.containing_service.full_name].address
            answers.append((name, path, await send(address, method, message.SerializeToString())))
        return answers

    for name, path, error in asyncio.run(scenario()):
        if error is None:
            continue  # accepted: a long id or reference is the caller's business
        where = (name, path, error.code(), error.details()[:200])
        assert error.code() not in (
            grpc.StatusCode.UNKNOWN,
            grpc.StatusCode.INTERNAL,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        ), where
        assert "Stream removed" not in error.details() and len(error.details().encode()) < 4000, where
    assert_still_serving(services)
