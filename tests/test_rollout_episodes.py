"""Multi-turn episodes end to end: `grpo-rollout serve --plugin` (hf, tiny model) and `grpo-reward serve`
as real processes on loopback.

The environment is defined here (`Answers`) and loaded into the rollout process with `--plugin
test_rollout_episodes:Answers`, the way an operator loads their own. The test checks the issue's
guarantees on what comes back: token ids are the sampler's ids plus the observation's ids exactly (the
observation encoded here, alone), the loss mask marks the model's tokens, environment tokens carry
logprob 0, and the learner's own logprob function, run over prompt + completion, reproduces the
sampler's logprobs at every model token (hf backend, temperature 1).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch
from grpo.v1 import rollout_pb2, rollout_pb2_grpc
from grpo_common.hf_tokenizer import load_tokenizer
from grpo_learner.grpo.logprobs import token_logprobs
from grpo_learner.local.service_processes import ServiceProcess, find_executable, start_service
from grpo_rollout.environments import EpisodeStart, ModelTurn, StepResult
from transformers import AutoModelForCausalLM

ROLLOUT_TESTS = Path(__file__).resolve().parents[1] / "packages" / "rollout" / "tests"
sys.path.insert(0, str(ROLLOUT_TESTS))

from rollout_testkit import build_model_dir  # noqa: E402

pytestmark = pytest.mark.slow

PLUGIN = "test_rollout_episodes:Answers"
OBSERVATION = " =7."


class Answers:
    """Answers every model turn with OBSERVATION (one tool call each); done after two steps."""

    stop_strings = ("|",)  # one token of the test tokenizer
    tools: tuple = ()

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.done_after = int(config.get("done_after", 2))

    def reset(self, start: EpisodeStart) -> dict[str, int]:
        return {"steps": 0}

    def step(self, state: dict[str, int], turn: ModelTurn) -> StepResult:
        state["steps"] += 1
        return StepResult(observation=OBSERVATION, done=state["steps"] >= self.done_after, tool_calls=1)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="module")
def rollout(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    # One after the other from this thread: a child dies with the thread that started it.
    root = tmp_path_factory.mktemp("episodes")
    reward = start_service("reward", [find_executable("grpo-reward"), "serve", "--workers", "1"], root)
    try:
        service = start_service(
            "rollout",
            [find_executable("grpo-rollout"), "serve", "--model", str(model_dir), "--torch-threads", "1",
             "--reward-address", reward.address, "--plugin", PLUGIN],
            root,
            env={"PYTHONPATH": str(Path(__file__).parent)},
        )  # fmt: skip
        try:
            yield service
        finally:
            service.stop(timeout_s=10)
    finally:
        reward.stop(timeout_s=10)


def generate(address: str, request: rollout_pb2.RolloutRequest) -> list[rollout_pb2.RolloutGroup]:
    async def call() -> list[rollout_pb2.RolloutGroup]:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = rollout_pb2_grpc.RolloutServiceStub(channel)
            return [group async for group in stub.Generate(request, timeout=60)]

    return asyncio.run(call())


def episode_request(name: str = PLUGIN) -> rollout_pb2.RolloutRequest:
    return rollout_pb2.RolloutRequest(
        prompts=[rollout_pb2.Prompt(id="p", text="12*34=", reference="408")],
        group_size=4,
        sampling=rollout_pb2.SamplingParams(temperature=1.0, max_new_tokens=40, seed=11),
        environment=rollout_pb2.EnvironmentSpec(name=name, max_turn_tokens=6),
    )


def test_episode_tokens_mask_stats_and_logprobs_through_real_services(
    rollout: ServiceProcess, model_dir: Path
) -> None:
    (group,) = generate(rollout.address, episode_request())
    tokenizer = load_tokenizer(model_dir)  # as the service loads it
    observation = tokenizer(OBSERVATION, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    prompt = list(group.prompt_token_ids)
    multi_turn = 0
    for completion in group.completions:
        ids, mask, logprobs = (
            list(completion.token_ids),
            list(completion.loss_mask),
            list(completion.logprobs),
        )
        assert len(ids) == len(mask) == len(logprobs)
        stats = completion.episode
        # Rebuild the episode from the contract: model turns (<= 6 tokens, mask true), each followed by
        # exactly the observation's ids (mask false, logprob 0) unless the model stopped on EOS.
        position, turns = 0, 0
        while position < len(ids):
            turn = []
            while position < len(ids) and mask[position]:
                turn.append(ids[position])
                position += 1
            assert 1 <= len(turn) <= 6
            turns += 1
            if position == len(ids):
                assert turn[-1] == eos  # only the model's own stop ends an episode on a model turn
                break
            assert ids[position : position + len(observation)] == observation
            assert not any(mask[position : position + len(observation)])
            assert logprobs[position : position + len(observation)] == [0.0] * len(observation)
            position += len(observation)
        assert (stats.turns, stats.tool_calls) == (turns, turns if ids[-1] != eos else turns - 1)
        assert stats.model_tokens == sum(mask) and stats.environment_tokens == len(ids) - sum(mask)
        assert completion.text == tokenizer.decode(ids, skip_special_tokens=True)
        assert "correctness" in completion.reward_components  # the real reward service scored it
        multi_turn += stats.turns == 2
        # The learner's logprob function over prompt + completion, at the model's tokens.
        context = torch.tensor([prompt + ids])
        with torch.no_grad():
            hidden = model.get_decoder()(input_ids=context).last_hidden_state[0]
            predicted_at = torch.arange(len(prompt) - 1, context.shape[1] - 1)
            recomputed, _ = token_logprobs(
                hidden[predicted_at],
                context[0, len(prompt) :],
                model.get_output_embeddings(),
                1.0,
                4096,
                False,
            )
        for sampler, learner, mine in zip(logprobs, recomputed.tolist(), mask, strict=True):
            if mine:
                assert sampler == pytest.approx(learner, abs=1e-4)
    assert multi_turn >= 1  # at least one episode went model, tool, model, tool


def test_unknown_environment_is_refused_with_the_known_ones_listed(rollout: ServiceProcess) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        generate(rollout.address, episode_request(name="calculater"))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "calculater" in raised.value.details() and PLUGIN in raised.value.details()
