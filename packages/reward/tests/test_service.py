"""RewardService end to end: `grpo-reward serve` as a real process on loopback, called over gRPC."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpo.v1 import reward_pb2, reward_pb2_grpc
from reward_fixtures import reward_server

MAX_BATCH = 16
HARD = r"\boxed{\int_0^1 e^{x^{x^x}} \sin(x^{x}) dx}"


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    flags = ["--workers", "2", "--max-batch-items", str(MAX_BATCH), "--log-level", "WARNING"]
    with reward_server(flags) as bound:
        yield bound


@pytest.fixture(scope="module")
def stub(address: str) -> Iterator[reward_pb2_grpc.RewardServiceStub]:
    with grpc.insecure_channel(address) as channel:
        yield reward_pb2_grpc.RewardServiceStub(channel)


def _item(item_id: str, completion: str, reference: str, tokens: int = 0) -> reward_pb2.ScoreItem:
    return reward_pb2.ScoreItem(
        id=item_id, completion=completion, reference=reference, completion_tokens=tokens
    )


def test_a_batch_is_scored_in_order_with_components(stub: reward_pb2_grpc.RewardServiceStub) -> None:
    spec = reward_pb2.RewardSpec(
        correctness_weight=1.0, format_weight=0.5, length_weight=1.0, max_completion_tokens=100,
        overlong_buffer_tokens=50,
    )  # fmt: skip
    request = reward_pb2.ScoreRequest(
        items=[
            _item("a", r"so \boxed{\frac{3}{4}}", "0.75", tokens=10),
            _item("b", r"so \boxed{x^2+2x}", "(x+1)^2", tokens=10),
            _item("c", "I think it is 42", "42", tokens=75),
            _item("d", "Natalia sold 72 clips.\n#### 72", "She sold 48 + 24 = 72.\n#### 72", tokens=200),
        ],
        spec=spec,
    )
    results = stub.Score(request, timeout=60).results
    assert [result.id for result in results] == ["a", "b", "c", "d"]
    assert [result.correct for result in results] == [True, False, False, True]
    assert results[0].reward == pytest.approx(1.5)
    assert dict(results[0].components) == {"correctness": 1.0, "format": 1.0, "length": 0.0}
    assert results[1].reward == pytest.approx(0.5)
    assert not results[2].HasField("extracted")
    assert results[2].reason == "no final answer found"
    assert results[2].reward == pytest.approx(-0.5)  # 75 tokens: halfway through the 50-token buffer
    assert results[3].reward == pytest.approx(1.5 - 1.0)


def test_absent_spec_means_plain_correctness(stub: reward_pb2_grpc.RewardServiceStub) -> None:
    (result,) = stub.Score(reward_pb2.ScoreRequest(items=[_item("x", r"\boxed{5}", "5")]), timeout=30).results
    assert (result.reward, dict(result.components)) == (1.0, {"correctness": 1.0})


def test_adversarial_items_do_not_stop_normal_ones(stub: reward_pb2_grpc.RewardServiceStub) -> None:
    spec = reward_pb2.RewardSpec(correctness_weight=1.0, timeout_s=1.0)
    adversarial = reward_pb2.ScoreRequest(
        items=[_item(f"h{i}", HARD if i % 2 else r"\boxed{(10^{100})!}", "5") for i in range(4)], spec=spec
    )
    normal = reward_pb2.ScoreRequest(
        items=[_item(f"n{i}", rf"\boxed{{\sqrt{{{4 * i * i}}}}}", str(2 * i)) for i in range(1, 6)], spec=spec
    )
    with ThreadPoolExecutor(4) as pool:
        hard_calls = [pool.submit(stub.Score, adversarial, timeout=60) for _ in range(2)]
        time.sleep(0.05)
        # the call's deadline is one only a hang reaches: 8 hard items cost at most 1 s of CPU each
        normal_results = pool.submit(stub.Score, normal, timeout=120).result().results
        hard_results = [result for call in hard_calls for result in call.result().results]
    assert all(result.correct for result in normal_results)
    assert not any(result.correct for result in hard_results)
    assert {result.reason.split(" ")[0] for result in hard_results} <= {"timeout", "too"}
    (after,) = stub.Score(reward_pb2.ScoreRequest(items=[_item("z", r"\boxed{2}", "2")]), timeout=30).results
    assert after.correct


@pytest.mark.parametrize(
    ("items", "spec", "expected"),
    [
        ([("", "a", "1")], None, "items[0].id"),
        ([("a", "x", "1"), ("a", "y", "2")], None, "items[1].id"),
        ([("a", "x", "1"), ("b", "y", "  ")], None, "items[1].reference"),
        ([(f"i{n}", "x", "1") for n in range(MAX_BATCH + 1)], None, "limit of 16"),
        ([("a", "x", "1")], reward_pb2.RewardSpec(timeout_s=11), "spec.timeout_s"),
        (
            [("a", "x", "1")],
            reward_pb2.RewardSpec(timeout_s=math.nan),
            "spec.timeout_s: Input should be a finite",
        ),
        ([("a", "x", "1")], reward_pb2.RewardSpec(length_weight=1), "max_completion_tokens"),
        # a token budget is checked even when no length term reads it (issue 25 item 9)
        ([("a", "x", "1")], reward_pb2.RewardSpec(max_completion_tokens=-1), "spec.max_completion_tokens"),
        (
            [("a", "x", "1")],
            reward_pb2.RewardSpec(length_weight=1, max_completion_tokens=-1),
            "spec.max_completion_tokens: must be >= 0",
        ),
        (
            [("a", "x", "1")],
            reward_pb2.RewardSpec(max_completion_tokens=100, overlong_buffer_tokens=200),
            "spec.overlong_buffer_tokens: 200 exceeds max_completion_tokens 100",
        ),
        (
            [("a", "x", "1")],
            reward_pb2.RewardSpec(
                components=[
                    reward_pb2.RewardComponent(
                        name="length", max_completion_tokens=10, overlong_buffer_tokens=20
                    )
                ]
            ),
            "spec.components[0]: overlong_buffer_tokens",
        ),
    ],
)
def test_bad_requests_are_invalid_argument_naming_the_field(
    stub: reward_pb2_grpc.RewardServiceStub, items: list[tuple[str, str, str]], spec: object, expected: str
) -> None:
    request = reward_pb2.ScoreRequest(items=[_item(*item) for item in items])
    if spec is not None:
        request.spec.CopyFrom(spec)
    with pytest.raises(grpc.RpcError) as raised:
        stub.Score(request, timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in raised.value.details()


def test_non_utf8_bytes_are_invalid_argument_naming_item_and_field(address: str) -> None:
    good = reward_pb2.ScoreItem(id="ok", completion="x", reference="1").SerializeToString()
    bad = b"\x0a\x02id" + b"\x12\x02\xff\xfe" + b"\x1a\x011"
    raw = b"\x0a" + bytes([len(good)]) + good + b"\x0a" + bytes([len(bad)]) + bad
    with grpc.insecure_channel(address) as channel:
        score = channel.unary_unary(
            "/grpo.v1.RewardService/Score",
            request_serializer=lambda payload: payload,
            response_deserializer=reward_pb2.ScoreResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as raised:
            score(raw, timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "items[1].completion" in raised.value.details()
