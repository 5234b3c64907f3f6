"""Reward tasks and plugins against a real `grpo-reward serve` on loopback: dispatch by name, plugins that
hang, crash or allocate without bound cost only their item, wire names are never imported, a timeout is
flagged rather than scored as a wrong answer, components and fields_json travel as the contract says."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from grpo.v1 import reward_pb2, reward_pb2_grpc
from reward_fixtures import PLUGINS_DIR, reward_server

WORKERS = 8  # more workers than the machine's cores: each gets a fraction of a core under load
PLUGINS = ["hostile_rewards", *(f"hostile_rewards:{name}" for name in ("brevity", "spin", "sleep"))]
PLUGINS += [f"hostile_rewards:{name}" for name in ("exit_process", "raise_error", "allocate", "not_a_number")]
PLUGINS += ["hostile_rewards:echo_fields"]


@pytest.fixture(scope="module")
def tripwire(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tripwire") / "imported"


@pytest.fixture(scope="module")
def entry_points_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An installed distribution (dist-info on the path) with one `grpo.tasks` entry point."""
    root = tmp_path_factory.mktemp("site")
    info = root / "brevity_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brevity-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[grpo.tasks]\nshort = hostile_rewards:brevity\n")
    return root


@pytest.fixture(scope="module")
def stub(tripwire: Path, entry_points_dir: Path) -> Iterator[reward_pb2_grpc.RewardServiceStub]:
    flags = ["--workers", str(WORKERS), "--worker-memory-mb", "1024", "--log-level", "WARNING"]
    flags += [argument for plugin in PLUGINS for argument in ("--plugin", plugin)]
    env = {"PYTHONPATH": f"{PLUGINS_DIR}:{entry_points_dir}", "TRIPWIRE_PATH": str(tripwire)}
    with reward_server(flags, env) as address, grpc.insecure_channel(address) as channel:
        yield reward_pb2_grpc.RewardServiceStub(channel)


def _score(stub: reward_pb2_grpc.RewardServiceStub, items: list[reward_pb2.ScoreItem], **spec: object):
    request = reward_pb2.ScoreRequest(items=items)
    if spec:
        request.spec.CopyFrom(reward_pb2.RewardSpec(**spec))
    return list(stub.Score(request, timeout=120).results)


def _item(item_id: str, task: str, completion: str = "x", reference: str = "x", **fields: object):
    return reward_pb2.ScoreItem(
        id=item_id, task=task, completion=completion, reference=reference, fields_json=json.dumps(fields)
    )


def _component(name: str, **values: object) -> reward_pb2.RewardComponent:
    return reward_pb2.RewardComponent(name=name, **values)


def _spec(*components: reward_pb2.RewardComponent) -> reward_pb2.RewardSpec:
    return reward_pb2.RewardSpec(components=components)


def _invalid(stub: reward_pb2_grpc.RewardServiceStub, request: reward_pb2.ScoreRequest) -> str:
    with pytest.raises(grpc.RpcError) as raised:
        stub.Score(request, timeout=60)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    return raised.value.details()


def test_built_in_tasks_are_dispatched_by_name(stub: reward_pb2_grpc.RewardServiceStub) -> None:
    results = _score(
        stub,
        [
            _item("math", "", r"so \boxed{\frac{3}{4}}", "0.75"),
            _item("choice", "choice", "I think the answer is (B).", "Paris", choices=["London", "Paris"]),
            _item("exact", "exact", "The answer is  New  York.", "new york"),
            _item("regex", "regex", r"\boxed{2024-01-31}", r"\d{4}-\d{2}-\d{2}"),
            _item("regex_wrong", "regex", r"\boxed{31/01/2024}", r"\d{4}-\d{2}-\d{2}"),
        ],
    )
    assert [result.correct for result in results] == [True, True, True, True, False]
    assert results[1].extracted == "B"


def test_plugins_by_module_function_module_and_entry_point(stub: reward_pb2_grpc.RewardServiceStub) -> None:
    results = _score(
        stub,
        [
            _item("module", "slow_correct", "42", "42", cpu_s=0.01),
            _item("function", "hostile_rewards:brevity", "x" * 25),
            _item("entry_point", "short", "x" * 50),
            _item("fields", "hostile_rewards:echo_fields", tests=[1], choices=["a"]),
        ],
    )
    assert results[0].correct
    assert results[1].reward == pytest.approx(0.75)
    assert results[2].reward == pytest.approx(0.5)
    assert (results[3].reward, results[3].reason) == (1.0, "choices,tests")


def test_hanging_crashing_and_allocating_plugins_cost_only_their_item(
    stub: reward_pb2_grpc.RewardServiceStub,
) -> None:
    results = _score(
        stub,
        [
            _item("spin", "hostile_rewards:spin"),
            _item("sleep", "hostile_rewards:sleep"),
            _item("exit", "hostile_rewards:exit_process"),
            _item("raise", "hostile_rewards:raise_error"),
            _item("allocate", "hostile_rewards:allocate"),
            _item("nan", "hostile_rewards:not_a_number"),
            _item("fine", "math", r"\boxed{\sqrt{8}}", r"2\sqrt2"),
        ],
        timeout_s=0.3,
    )
    by_id = {result.id: result for result in results}
    assert by_id["spin"].timed_out and "CPU" in by_id["spin"].reason
    assert by_id["sleep"].timed_out and "wall-clock" in by_id["sleep"].reason  # asleep: the backstop
    assert by_id["exit"].timed_out and "worker died" in by_id["exit"].reason
    assert not by_id["raise"].timed_out and "RuntimeError: this plugin is broken" in by_id["raise"].reason
    allocated = by_id["allocate"]
    assert allocated.timed_out or "out of memory" in allocated.reason, allocated.reason
    assert "finite" in by_id["nan"].reason and by_id["nan"].reward == 0.0
    assert by_id["fine"].correct and not by_id["fine"].timed_out
    assert not any(result.correct for result in results if result.id != "fine")
    (after,) = _score(stub, [_item("after", "math", r"\boxed{2}", "2")])
    assert after.correct  # the service and its workers are still there


def test_a_request_cannot_make_the_service_import_a_module(
    stub: reward_pb2_grpc.RewardServiceStub, tripwire: Path
) -> None:
    for name in ("os:system", "tripwire:score"):
        details = _invalid(stub, reward_pb2.ScoreRequest(items=[_item("a", name, "echo pwned", "x")]))
        assert "items[0].task" in details and name in details
        spec = reward_pb2.RewardSpec(components=[reward_pb2.RewardComponent(name=name)])
        details = _invalid(stub, reward_pb2.ScoreRequest(items=[_item("a", "math")], spec=spec))
        assert "spec.components[0]" in details
    assert not tripwire.exists()


def test_under_32_concurrent_clients_a_correct_answer_stays_correct_and_timeouts_are_flagged(
    stub: reward_pb2_grpc.RewardServiceStub,
) -> None:
    """0.3 s of CPU per item, a 1 s limit, 8 workers sharing this machine's cores: each item takes well
    over 1 s of wall-clock time, yet uses 0.3 s of CPU, so none may time out."""

    def call(number: int) -> reward_pb2.ScoreResult:
        item = _item(f"c{number}", "slow_correct", "42", "42")
        (result,) = _score(stub, [item], timeout_s=1.0)
        return result

    with ThreadPoolExecutor(32) as pool:
        spinning = pool.submit(_score, stub, [_item("spin", "hostile_rewards:spin")], timeout_s=1.0)
        results = list(pool.map(call, range(32)))
    assert [(result.correct, result.timed_out) for result in results] == [(True, False)] * 32
    (timed_out,) = spinning.result()
    assert timed_out.timed_out and not timed_out.correct and timed_out.reward == 0.0


def test_components_weigh_task_terms_and_report_each_by_name(stub: reward_pb2_grpc.RewardServiceStub) -> None:
    spec = reward_pb2.RewardSpec(
        components=[
            reward_pb2.RewardComponent(name="correctness"),  # weight absent: 1
            reward_pb2.RewardComponent(name="format", weight=0.1),
            _component("length", weight=0.5, max_completion_tokens=100, overlong_buffer_tokens=50),
            reward_pb2.RewardComponent(name="hostile_rewards:brevity", weight=2.0),
        ]
    )  # fmt: skip
    completion = r"so \boxed{4}" + " " * 38  # 50 characters: brevity 0.5
    item = reward_pb2.ScoreItem(id="a", completion=completion, reference="4", completion_tokens=75)
    (result,) = stub.Score(reward_pb2.ScoreRequest(items=[item], spec=spec), timeout=60).results
    assert dict(result.components) == pytest.approx(
        {
            "correctness": 1.0,
            "format": 1.0,
            "length": -0.5,
            "hostile_rewards:brevity": 0.5,
            "hostile_rewards:brevity/characters": 50.0,  # a task term's own sub-score, as <name>/<sub>
        }
    )
    assert result.reward == pytest.approx(1.0 + 0.1 - 0.25 + 1.0)


def test_a_present_spec_without_correctness_weight_weighs_correctness_1(
    stub: reward_pb2_grpc.RewardServiceStub,
) -> None:
    (result,) = _score(stub, [_item("a", "math", r"\boxed{5}", "5")], format_weight=0.5)
    assert result.reward == pytest.approx(1.5)
    (zero,) = _score(stub, [_item("a", "math", r"\boxed{5}", "5")], correctness_weight=0.0, format_weight=0.5)
    assert zero.reward == pytest.approx(0.5)  # an explicit 0 is still 0


@pytest.mark.parametrize(
    ("spec", "fields_json", "expected"),
    [
        (reward_pb2.RewardSpec(correctness_weight=1e308, format_weight=1e308), "", "spec.format_weight"),
        (
            _spec(_component("correctness", weight=1e308), _component("format", weight=-1e308)),
            "",
            "spec.components[1]",
        ),
        (_spec(_component("length")), "", "spec.components[0]"),
        (_spec(_component("format"), _component("format")), "", "twice"),
        (_spec(_component("correctness", weight=float("nan"))), "", "spec.components[0].weight"),
        (None, "[1, 2]", "items[0].fields_json must be a JSON object"),
        (None, "{not json", "items[0].fields_json is not valid JSON"),
        (None, '{"a": ' * 40 + "1" + "}" * 40, "items[0].fields_json is nested deeper"),
        (None, "[" * 100_000 + "]" * 100_000, "items[0].fields_json"),
        (None, '{"x": 1e999}', "not a finite number"),
        (None, '{"reference": "1"}', "'reference'"),
        (None, '{"pad": "' + "x" * (1 << 20) + '"}', "over this server's limit"),
    ],
)
def test_unrepresentable_arithmetic_and_bad_fields_are_invalid_argument_naming_the_field(
    stub: reward_pb2_grpc.RewardServiceStub, spec: object, fields_json: str, expected: str
) -> None:
    item = reward_pb2.ScoreItem(id="a", completion=r"\boxed{1}", reference="1", fields_json=fields_json)
    request = reward_pb2.ScoreRequest(items=[item], spec=spec)
    assert expected in _invalid(stub, request)
