"""The episodes of one batch of prompts: G per prompt, independent, their model turns batched.

1. First turns: every prompt's G episodes begin from the same prompt, so the first model turn is one
   generate call with n = G per prompt (the hf backend prefills the prompt once, SGLang shares it).
2. Then each episode runs on its own (`run_episode`): its environment steps in a thread of this batch's
   pool, and its next turn goes to the `TurnBatcher`, which sends the turns that are waiting together as
   one generate call. A slow step delays only its own episode.

Version consistency (a group never mixes weight versions): today a single-turn batch is one generate
call, and the backend's gate keeps a weight update from landing inside a call. An episode batch is many
calls, so the caller (the service) holds its episode gate (`VersionGate`, shared) for the whole batch
and a weight push takes it exclusively before applying: an update waits for running episode batches,
and batches that start after it queue behind it (writer-preferring, so no starvation). We chose to
hold the gate rather than detect a mixed group and regenerate because regenerating throws away whole
episodes, tool calls included, each time an update lands, and updates land often when generation
overlaps training; waiting costs the update at most one batch of episodes. Updates over a collective
group (UpdateWeightsDistributed, spread over several RPCs) do not take the gate: if one lands between
two turns, the episode records both versions and the service drops the group as a MixedVersionGroup
(the learner re-sends the prompt), so a mixed group is still never sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from grpo_rollout.backends.contract import GeneratedCompletion, GeneratorInfo, SamplingParams
from grpo_rollout.config.limits import ServiceLimits
from grpo_rollout.environments.episode import EpisodeCompletion, EpisodeContext, run_episode
from grpo_rollout.environments.turn_batcher import GATHER_S, GenerateCall, TurnBatcher, merged_stops
from grpo_rollout.prompt_encoding import PromptEncoder
from grpo_rollout.request_validation import PreparedPrompt


async def run_episodes(
    prompts: Sequence[PreparedPrompt],
    group_size: int,
    sampling: SamplingParams,
    generate: GenerateCall,
    *,
    encoder: PromptEncoder,
    generator: GeneratorInfo,
    limits: ServiceLimits,
    gather_s: float = GATHER_S,
) -> list[list[EpisodeCompletion]]:
    """`group_size` episodes of every prompt (each has an environment), in prompt order.

    The backend (`generator`) says which tokens end a turn and which ids exist; the service's resolved
    `limits` how many generate calls of the batch may run at once (`max_concurrent_batches`)."""
    episodes = len(prompts) * group_size
    steps = ThreadPoolExecutor(max_workers=episodes, thread_name_prefix="environment-step")
    shared = EpisodeContext(
        encoder=encoder,
        budget=sampling.max_new_tokens,
        request_stop_ids=frozenset({*generator.eos_token_ids, *sampling.stop_token_ids}),
        vocab_size=generator.vocab_size,
        steps=steps,
    )
    try:
        first = await first_turns(prompts, group_size, sampling, generate)
        batcher = TurnBatcher(generate, sampling, episodes, gather_s, limits.max_concurrent_batches)

        async def episode(prompt: PreparedPrompt, index: int) -> EpisodeCompletion:
            try:
                return await run_episode(prompt, index, first[prompt.id][index], batcher.sample, shared)
            finally:
                batcher.episode_ended()

        try:
            async with batcher.running(), asyncio.TaskGroup() as tasks:
                running = [
                    [tasks.create_task(episode(prompt, j)) for j in range(group_size)] for prompt in prompts
                ]
        except ExceptionGroup as failed:  # e.g. the backend's error: the caller maps it to a status
            raise failed.exceptions[0] from None
        return [[task.result() for task in group] for group in running]
    finally:
        # A step that never returns keeps its thread; nothing waits for it (its episode is gone).
        steps.shutdown(wait=False, cancel_futures=True)


async def first_turns(
    prompts: Sequence[PreparedPrompt], group_size: int, sampling: SamplingParams, generate: GenerateCall
) -> dict[str, list[GeneratedCompletion]]:
    """The first model turn of every episode: one call (n = G) per distinct turn limit and stop set."""
    calls: dict[tuple[int, tuple[int, ...]], list[PreparedPrompt]] = {}
    for prompt in prompts:
        env = prompt.environment
        assert env is not None, "first_turns needs prompts with an environment"
        key = (
            env.turn_tokens(sampling.max_new_tokens),
            merged_stops(sampling.stop_token_ids, env.stop_token_ids),
        )
        calls.setdefault(key, []).append(prompt)

    async def call(key: tuple[int, tuple[int, ...]], group: list[PreparedPrompt]) -> None:
        config = dataclasses.replace(sampling, max_new_tokens=key[0], stop_token_ids=key[1])
        results = await generate([p.token_ids for p in group], group_size, config)
        turns.update({p.id: list(result) for p, result in zip(group, results, strict=True)})

    turns: dict[str, list[GeneratedCompletion]] = {}
    await asyncio.gather(*(call(key, group) for key, group in calls.items()))
    return turns
