"""Every float sampling field at its edges, through a real RolloutService (issue 11, item 5).

The boundary: a temperature below SGLang's greedy threshold (1e-6) is greedy, on both backends;
NaN and infinities are refused naming the field. Before this, temperature 1e-45 passed validation
and overflowed `logits / temperature` into INTERNAL ("probability tensor contains inf/nan").
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from grpo.v1 import rollout_pb2
from grpo_rollout.sampling import GREEDY_TEMPERATURE_BELOW
from rollout_reward_standin import RewardStandin
from rollout_service_harness import config, request, serving, token_prompt

DENORMAL = 1e-45  # rounds to float32's smallest subnormal, 1.4e-45
SMALLEST_NORMAL = 1.1754944e-38
EDGES = {"denormal": DENORMAL, "smallest normal": SMALLEST_NORMAL, "1e-8": 1e-8}
REFUSED = {"nan": math.nan, "+inf": math.inf, "-inf": -math.inf}
# What an edge value must do, per float field: "greedy" = the same tokens as temperature 0.
EXPECTED = {"temperature": "greedy", "top_p": "greedy"}  # top_p that small keeps only the top token
FLOAT_TYPES = (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE)


def float_fields() -> list[str]:
    return [f.name for f in rollout_pb2.SamplingParams.DESCRIPTOR.fields if f.type in FLOAT_TYPES]


def test_every_float_sampling_field_has_a_case() -> None:
    assert sorted(float_fields()) == sorted(EXPECTED), "a new float sampling field needs edge cases here"
    assert GREEDY_TEMPERATURE_BELOW == 1e-6  # SGLang's _SAMPLING_EPS


@pytest.fixture
def reward():
    standin = RewardStandin().start()
    yield standin
    standin.stop()


def prompt_request(**sampling: float) -> rollout_pb2.RolloutRequest:
    return request([token_prompt("p", [1, 5, 6])], group_size=2, max_new_tokens=5, **sampling)


def tokens(groups: list[rollout_pb2.RolloutGroup]) -> list[list[int]]:
    return [list(c.token_ids) for g in groups for c in g.completions]


def test_hf_backend_edges_are_greedy_and_non_finite_values_are_refused(
    tiny_model_dir: Path, reward: RewardStandin
) -> None:
    async def scenario():
        answers: dict[tuple[str, str], object] = {}
        async with serving(config(tiny_model_dir, reward.address)) as client:
            greedy = tokens(await client.generate(prompt_request(temperature=0.0)))
            for field in float_fields():
                for name, value in {**EDGES, **REFUSED}.items():
                    sampling = {"temperature": 1.0, field: value}
                    try:
                        answers[field, name] = tokens(await client.generate(prompt_request(**sampling)))
                    except grpc.aio.AioRpcError as error:
                        answers[field, name] = error
            still = tokens(await client.generate(prompt_request(temperature=0.0)))
        return greedy, answers, still

    greedy, answers, still = asyncio.run(scenario())
    assert still == greedy  # the service still serves, unchanged
    for field in float_fields():
        for name in EDGES:
            answer = answers[field, name]
            assert not isinstance(answer, grpc.aio.AioRpcError), (field, name, answer)
            assert answer == greedy, (field, name)
        for name in REFUSED:
            error = answers[field, name]
            assert isinstance(error, grpc.aio.AioRpcError), (field, name)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, name, error.details())
            assert f"sampling.{field}" in error.details(), (field, name, error.details())


def test_sglang_backend_gets_greedy_for_tiny_temperatures_and_never_a_non_finite_value(
    tiny_model_dir: Path, tmp_path: Path, reward: RewardStandin
) -> None:
    from rollout_sglang_standin import StandinServer

    with StandinServer() as engine:
        cfg = config(tiny_model_dir, reward.address)
        cfg = type(cfg).model_validate(
            cfg.model_dump()
            | {"generator": "sglang", "sglang": {"urls": [engine.url], "weight_dir": str(tmp_path / "w")}}
        )

        async def scenario():
            errors = {}
            async with serving(cfg) as client:
                for field in float_fields():
                    for name, value in {**EDGES, **REFUSED}.items():
                        try:
                            await client.generate(prompt_request(**{field: value}))
                        except grpc.aio.AioRpcError as error:
                            errors[field, name] = error
            return errors

        errors = asyncio.run(scenario())
        sent = [body["sampling_params"] for path, body in engine.state.calls if path == "/generate"]
    assert sorted(errors) == sorted((field, name) for field in float_fields() for name in REFUSED)
    assert all(e.code() == grpc.StatusCode.INVALID_ARGUMENT for e in errors.values())
    params = [p for batch in sent for p in (batch if isinstance(batch, list) else [batch])]
    assert params and all(math.isfinite(p["temperature"]) and math.isfinite(p["top_p"]) for p in params)
    # every edge temperature reached the engine as 0: greedy by SGLang's rule too, never 1e-45
    temperatures = {p["temperature"] for p in params}
    assert temperatures <= {0.0, 1.0} and 0.0 in temperatures
