"""Multi-turn episodes through a real RolloutService (hf backend, tiny model) on loopback gRPC.

The environment is `rollout_scripted_envs.FixedObservation`, loaded the way an operator's `--plugin`
loads it (`ENVIRONMENTS.load_reference`, here through RolloutServiceConfig.plugins). Greedy decoding makes the
tiny model's turns deterministic (it repeats its last token), which the tests use to pick stop strings.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc
import pytest
import rollout_scripted_envs
from grpo.v1 import rollout_pb2
from grpo_common.weights.codec import encode_state_dict
from grpo_rollout.backends.contract import SamplingParams
from grpo_rollout.backends.hf.config import HFConfig
from grpo_rollout.backends.hf.generator import HFGenerator
from grpo_rollout.cli import main
from grpo_rollout.config import LimitSettings, SGLangSettings
from grpo_rollout.environments import ENVIRONMENTS
from grpo_rollout.environments.episode_runner import run_episodes
from grpo_rollout.prompt_encoding import PromptEncoder
from grpo_rollout.request_validation import PreparedPrompt, RequestEnvironments
from rollout_reward_standin import RewardStandin
from rollout_service_harness import config, request, serving, token_prompt
from rollout_sglang_standin import StandinServer, predicted_logprob, predicted_tokens
from rollout_testkit import other_weights
from transformers import PreTrainedTokenizerFast

ENV = "rollout_scripted_envs:FixedObservation"
OBSERVATION = " ok:"


@pytest.fixture
def reward():
    standin = RewardStandin().start()
    yield standin
    standin.stop()


def episode_request(
    prompts: list[rollout_pb2.Prompt],
    settings: dict[str, Any] | None = None,
    max_turns: int = 0,
    max_turn_tokens: int = 5,
    name: str = ENV,
    **sampling: Any,
) -> rollout_pb2.RolloutRequest:
    sampling.setdefault("temperature", 0.0)
    sampling.setdefault("max_new_tokens", 24)
    built = request(prompts, **sampling)
    built.environment.CopyFrom(
        rollout_pb2.EnvironmentSpec(
            name=name,
            max_turns=max_turns,
            max_turn_tokens=max_turn_tokens,
            config_json=json.dumps(settings or {}),
        )
    )
    return built


def run(model_dir: Path, reward: RewardStandin, *requests: rollout_pb2.RolloutRequest, **limits: Any):
    """Serve, send each request in turn, return each one's groups (or the RpcError it raised)."""
    cfg = config(model_dir, reward.address, **limits).model_copy(update={"plugins": [ENV]})

    async def scenario():
        answers = []
        async with serving(cfg) as client:
            for one in requests:
                try:
                    answers.append(await client.generate(one))
                except grpc.aio.AioRpcError as error:
                    answers.append(error)
        return answers

    return asyncio.run(scenario())


def segments(completion: rollout_pb2.Completion) -> list[tuple[bool, list[int]]]:
    """(is the model's, token ids) runs of a completion, in order."""
    runs: list[tuple[bool, list[int]]] = []
    for token, mine in zip(completion.token_ids, completion.loss_mask, strict=True):
        if runs and runs[-1][0] == mine:
            runs[-1][1].append(token)
        else:
            runs.append((mine, [token]))
    return runs


def test_episode_is_exactly_the_generators_tokens_then_the_observations_tokens(
    tiny_model_dir: Path, reward: RewardStandin, tokenizer: PreTrainedTokenizerFast
) -> None:
    prompt = [1, 5, 6]
    (groups,) = run(tiny_model_dir, reward, episode_request([token_prompt("p", prompt)]))
    observation = tokenizer(OBSERVATION, add_special_tokens=False)["input_ids"]
    # Replay the episode with the backend alone: turn 1 from the prompt, turn 2 from prompt + turn 1 +
    # observation. Greedy, so the service's episode must be exactly these ids, nothing re-encoded.
    generator = HFGenerator.from_pretrained(tiny_model_dir, HFConfig())
    greedy = SamplingParams(
        max_new_tokens=5, temperature=0.0, stop_token_ids=(tokenizer.convert_tokens_to_ids("|"),)
    )
    turn1 = generator.generate_sync([prompt], 1, greedy)[0][0].token_ids
    turn2 = generator.generate_sync([prompt + turn1 + observation], 1, greedy)[0][0].token_ids
    expected = turn1 + observation + turn2 + observation

    (group,) = groups
    assert len(group.completions) == 2
    for completion in group.completions:
        assert list(completion.token_ids) == expected
        assert list(completion.loss_mask) == [True] * 5 + [False] * 4 + [True] * 5 + [False] * 4
        assert [
            lp for lp, mine in zip(completion.logprobs, completion.loss_mask, strict=True) if not mine
        ] == [0.0] * 8
        assert all(lp < 0 for lp, mine in zip(completion.logprobs, completion.loss_mask, strict=True) if mine)
        stats = completion.episode
        assert (stats.turns, stats.tool_calls, stats.tool_errors) == (2, 2, 0)
        assert (stats.model_tokens, stats.environment_tokens, stats.turn_limit_reached) == (10, 8, False)
        assert stats.tool_seconds >= 0
        assert completion.finish_reason == rollout_pb2.FINISH_REASON_STOP
        assert completion.text == tokenizer.decode(expected, skip_special_tokens=True)
    # the reward service scored the decoded whole episode
    assert {item.completion for item in reward.requests[-1].items} == {group.completions[0].text}


def test_turn_limit_budget_tool_error_and_environment_reward(
    tiny_model_dir: Path, reward: RewardStandin, tokenizer: PreTrainedTokenizerFast
) -> None:
    prompt = [token_prompt("p", [1, 5, 6])]
    observation = tokenizer(OBSERVATION, add_special_tokens=False)["input_ids"]
    limited, budget, crashed, rewarded = run(
        tiny_model_dir,
        reward,
        episode_request(prompt, {"done_after": 5}, max_turns=2),
        episode_request(prompt, max_new_tokens=7),  # 5 model tokens, then 2 of the 4 observation tokens
        episode_request(prompt, {"raise_on_step": 1}),
        episode_request(prompt, {"reward": 0.25}),
    )
    for completion in limited[0].completions:
        assert completion.episode.turns == 2 and completion.episode.turn_limit_reached
        assert [mine for mine, _ in segments(completion)] == [True, False, True, False]
    for completion in budget[0].completions:
        assert len(completion.token_ids) == 7
        assert completion.finish_reason == rollout_pb2.FINISH_REASON_LENGTH
        assert segments(completion)[1] == (False, observation[:2])
        assert (completion.episode.model_tokens, completion.episode.environment_tokens) == (5, 2)
    for completion in crashed[0].completions:  # step 0 answered, step 1 raised: the episode ends there
        assert (completion.episode.turns, completion.episode.tool_errors) == (2, 1)
        assert [mine for mine, _ in segments(completion)] == [True, False, True]
        assert completion.finish_reason == rollout_pb2.FINISH_REASON_STOP
    for completion in rewarded[0].completions:
        assert completion.episode.environment_reward == pytest.approx(0.5)
        assert completion.reward_components["environment"] == pytest.approx(0.5)
        assert completion.reward == pytest.approx(completion.reward_components["correctness"] + 0.5)


def test_a_turn_ends_on_the_environments_stop_string(
    tiny_model_dir: Path, reward: RewardStandin, tokenizer: PreTrainedTokenizerFast
) -> None:
    # Greedy, the tiny model repeats the prompt's last token ("3" = id 6): with "3" as the stop
    # string every model turn is that one token, and the environment sees it as the stop string.
    (groups,) = run(
        tiny_model_dir, reward, episode_request([token_prompt("p", [1, 5, 6])], {"stop_string": "3"})
    )
    three = tokenizer.convert_tokens_to_ids("3")
    for completion in groups[0].completions:
        model_turns = [ids for mine, ids in segments(completion) if mine]
        assert model_turns[0] == [three]
        assert completion.episode.model_tokens == sum(len(t) for t in model_turns)


def test_rows_choose_their_environment_and_none_means_single_turn(
    tiny_model_dir: Path, reward: RewardStandin
):
    single = token_prompt("single", [1, 5, 6])
    single.environment = "none"
    episodic = token_prompt("episodic", [1, 7])
    plain = request([token_prompt("plain", [1, 8])], max_new_tokens=24, temperature=0.0)
    plain.environment.max_turn_tokens = 5  # no environment.name: single-turn but for this row
    plain.prompts[0].environment = ENV
    (mixed, row_chosen) = run(tiny_model_dir, reward, episode_request([single, episodic]), plain)
    by_id = {g.prompt_id: g for g in mixed}
    assert all(not c.loss_mask and not c.HasField("episode") for c in by_id["single"].completions)
    assert all(c.episode.turns == 2 for c in by_id["episodic"].completions)
    assert all(c.episode.turns == 2 for c in row_chosen[0].completions)


def test_a_slow_tool_step_does_not_hold_up_the_other_episodes(tiny_model_dir: Path, reward: RewardStandin):
    slow_s = 1.5
    rollout_scripted_envs.STEP_LOG.clear()
    settings = {"slow_episode": 0, "step_sleep_s": slow_s}
    (groups,) = run(
        tiny_model_dir, reward, episode_request([token_prompt("p", [1, 5, 6])], settings, group_size=4)
    )
    log = rollout_scripted_envs.STEP_LOG
    slow_first_step_ended = min(end for episode, _, end in log if episode == 0)
    fast_last_step_ended = max(end for episode, _, end in log if episode != 0)
    # The 3 fast episodes took their 2nd model turn (and finished) while episode 0's first step slept.
    assert fast_last_step_ended < slow_first_step_ended
    assert all(c.episode.turns == 2 for c in groups[0].completions)
    assert groups[0].completions[0].episode.tool_seconds >= 2 * slow_s * 0.9


@pytest.mark.parametrize(
    ("spec", "prompt_environment", "words"),
    [
        (dict(name="no-such-env"), "", ["environment.name", "no-such-env", ENV]),
        (dict(name=ENV), "os:system", ["prompts[0].environment", "os:system"]),
        (dict(name=ENV, max_turns=-1), "", ["environment.max_turns"]),
        (dict(name=ENV, max_turn_tokens=-2), "", ["environment.max_turn_tokens"]),
        (dict(name=ENV, config_json="[1]"), "", ["environment.config_json", "JSON object"]),
        (dict(name=ENV, config_json="{"), "", ["environment.config_json", "not valid JSON"]),
        (dict(name=ENV, config_json='{"colour": 1}'), "", ["refused", "unknown settings", "colour"]),
        (dict(name=ENV, config_json='{"stop_string": "ok"}'), "", ["stop string 'ok'", "2 tokens"]),
        (dict(name=ENV, config_json=json.dumps({"x": "y" * 70_000})), "", ["config_json", "limit"]),
    ],
)
def test_bad_environment_requests_are_refused_with_the_field_named(
    tiny_model_dir: Path, reward: RewardStandin, spec: dict, prompt_environment: str, words: list[str]
) -> None:
    bad = request([token_prompt("p", [1, 5, 6])])
    bad.environment.CopyFrom(rollout_pb2.EnvironmentSpec(**spec))
    bad.prompts[0].environment = prompt_environment
    good = episode_request([token_prompt("p", [1, 5, 6])])
    error, after = run(tiny_model_dir, reward, bad, good)
    assert isinstance(error, grpc.aio.AioRpcError)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    for word in words:
        assert word in error.details()
    assert not isinstance(after, grpc.aio.AioRpcError) and after[0].completions[0].episode.turns == 2


def test_serve_stops_with_the_plugin_named_when_it_cannot_be_loaded(
    tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    argv = ["serve", "--model", str(tiny_model_dir), "--reward-address", "127.0.0.1:1", "--port", "0"]
    assert main([*argv, "--plugin", "no_such_environments_module"]) == 1
    assert "plugin 'no_such_environments_module' failed to import" in caplog.text
    assert main([*argv, "--plugin", "rollout_scripted_envs:Missing"]) == 1
    assert "has no 'Missing'" in caplog.text


def standin_turn(context: list[int], max_new: int, stops: set[int]) -> list[int]:
    """What the SGLang stand-in answers for one turn (no sampling_seed: 0; weights version 0)."""
    tokens = predicted_tokens(context, 0, 0, max_new)
    end = next((k + 1 for k, t in enumerate(tokens) if t in stops), len(tokens))
    return tokens[:end]


def test_sglang_episodes_continue_by_input_ids_against_the_standin(
    tiny_model_dir: Path, reward: RewardStandin, tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    prompt = [1, 5, 6]
    observation = tokenizer(OBSERVATION, add_special_tokens=False)["input_ids"]
    stops = {tokenizer.convert_tokens_to_ids("|"), tokenizer.eos_token_id}
    with StandinServer(model_path=str(tiny_model_dir)) as server:
        cfg = config(tiny_model_dir, reward.address).model_copy(
            update={
                "generator": "sglang",
                "sglang": SGLangSettings(urls=[server.url], weight_dir=tmp_path / "weights"),
                "plugins": [ENV],
            }
        )

        async def scenario() -> list[rollout_pb2.RolloutGroup]:
            async with serving(cfg) as client:
                return await client.generate(episode_request([token_prompt("p", prompt)], temperature=1.0))

        (group,) = asyncio.run(scenario())
        generates = [payload for path, payload in server.state.calls if path == "/generate"]
    turn1 = standin_turn(prompt, 5, stops)
    turn2 = standin_turn(prompt + turn1 + observation, 5, stops)
    # Turn 1: one request carrying the group's G sequences of the shared prompt; turn 2: a new
    # /generate per episode whose input_ids are the prompt, turn 1's output ids and the observation's ids.
    assert generates[0]["input_ids"] == [prompt, prompt]
    assert all(call["input_ids"] == [prompt + turn1 + observation] for call in generates[1:])
    assert all(
        stops - {tokenizer.eos_token_id} <= set(p["stop_token_ids"]) for p in generates[1]["sampling_params"]
    )
    for completion in group.completions:
        assert list(completion.token_ids) == turn1 + observation + turn2 + observation
        mine = [lp for lp, m in zip(completion.logprobs, completion.loss_mask, strict=True) if m]
        expected = [predicted_logprob(k) for k in range(len(turn1))] + [
            predicted_logprob(k) for k in range(len(turn2))
        ]
        assert mine == pytest.approx(expected)
        assert completion.episode.turns == 2 and completion.episode.environment_tokens == 2 * len(observation)


def test_turns_waiting_together_go_to_the_backend_as_one_batch(
    tiny_model_dir: Path, tokenizer: PreTrainedTokenizerFast
) -> None:
    generator = HFGenerator.from_pretrained(tiny_model_dir, HFConfig())
    calls: list[tuple[int, int]] = []  # (prompts, n) of every generate call

    async def generate(prompts, n, sampling):
        calls.append((len(prompts), n))
        return await generator.generate(prompts, n, sampling)

    ENVIRONMENTS.load_reference(ENV)  # what --plugin does
    spec = rollout_pb2.EnvironmentSpec(name=ENV, max_turn_tokens=4)
    environments = RequestEnvironments(spec, PromptEncoder(tokenizer))
    prompts = [
        PreparedPrompt(f"p{i}", [1, 5 + i], "7", "", environment=environments.get("environment.name", ENV))
        for i in range(4)
    ]
    # a gather window only a hang waits out (past pytest's timeout): the batcher must flush on its own
    sampling = SamplingParams(max_new_tokens=20, temperature=0.0)
    episodes = run_episodes(
        prompts,
        3,
        sampling,
        generate,
        encoder=PromptEncoder(tokenizer),
        generator=generator.info(),
        limits=LimitSettings().for_backend("hf"),  # one generate call at a time
        gather_s=3600.0,
    )
    groups = asyncio.run(episodes)
    # Turn 1: the 4 prompts once each with n = 3; turn 2: all 12 episodes in one call (the batcher
    # flushes as soon as every live episode waits, long before its 2 s window).
    assert calls == [(4, 3), (12, 1)]
    assert all(e.stats.turns == 2 for group in groups for e in group)


def test_tool_seconds_count_tool_calls_only_not_resets_or_turns_that_called_nothing(
    tiny_model_dir: Path, tokenizer: PreTrainedTokenizerFast
) -> None:
    # Every reset sleeps and every step reports no tool call: the episodes step the environment (in
    # their step threads) yet call no tool, so they spent no tool-seconds. tool_seconds once summed
    # the resets and the hops to the step thread and back: tens of seconds at a step with 0 tool calls.
    generator = HFGenerator.from_pretrained(tiny_model_dir, HFConfig())
    ENVIRONMENTS.load_reference(ENV)  # what --plugin does
    spec = rollout_pb2.EnvironmentSpec(
        name=ENV, max_turn_tokens=4, config_json=json.dumps({"reset_sleep_s": 0.2, "tool_calls": 0})
    )
    environment = RequestEnvironments(spec, PromptEncoder(tokenizer)).get("environment.name", ENV)
    prompts = [PreparedPrompt("p", [1, 5], "7", "", environment=environment)]
    sampling = SamplingParams(max_new_tokens=20, temperature=0.0)
    episodes = run_episodes(
        prompts,
        2,
        sampling,
        generator.generate,
        encoder=PromptEncoder(tokenizer),
        generator=generator.info(),
        limits=LimitSettings().for_backend("hf"),
    )
    (group,) = asyncio.run(episodes)
    assert [(e.stats.turns, e.stats.tool_calls) for e in group] == [(2, 0), (2, 0)]  # 2 steps each
    assert [e.stats.tool_seconds for e in group] == [0.0, 0.0]


def test_a_weight_push_waits_for_running_episodes_so_no_group_mixes_versions(
    tiny_model_dir: Path, reward: RewardStandin
) -> None:
    # Every episode's first step sleeps 1 s; the push arrives during it. Without the episode gate
    # the second turns would run on version 1 and the group would be dropped as mixed.
    settings = {"slow_episode": "all", "step_sleep_s": 1.0}
    cfg = config(tiny_model_dir, reward.address).model_copy(update={"plugins": [ENV]})
    weights = other_weights(tiny_model_dir, seed=3)

    async def scenario():
        async with serving(cfg) as client:
            episodes = asyncio.create_task(
                client.generate(episode_request([token_prompt("p", [1, 5, 6])], settings))
            )
            await asyncio.sleep(0.4)
            pushed = await client.stub.UpdateWeights(encode_state_dict(weights, 1), timeout=30)
            return await episodes, pushed, episodes.done()

    groups, pushed, finished_first = asyncio.run(scenario())
    assert pushed.policy_version == 1 and finished_first  # the push returned only after the batch
    (group,) = groups
    assert group.policy_version == 0 and all(c.episode.turns == 2 for c in group.completions)
