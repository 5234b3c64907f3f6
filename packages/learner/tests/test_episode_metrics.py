"""Per-step episode metrics (Completion.episode): values, absence for single-turn runs, and a run that
receives episodes over real gRPC and logs them to metrics.jsonl, TensorBoard and the end table."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
import torch
from grpo.v1 import rollout_pb2
from grpo_learner.data.episodes import EpisodeStats, EpisodeTable, episode_metrics
from grpo_learner.data.rollout_data import ScoredCompletion, ScoredGroup
from grpo_learner.data.sources import StepBatch
from grpo_learner.training.loop import run_training
from learner_fixtures import group, save_tiny_model, token_prompts
from recording_rollout import RecordingRollout, start_recording_rollout
from rich.console import Console
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_loop import config

torch.set_num_threads(1)

EPISODE_KEYS = {
    "episode/turns",
    "episode/tool_calls",
    "episode/tool_errors",
    "episode/with_tool_calls",
    "episode/tool_seconds",
    "episode/tool_seconds_mean",
    "episode/seconds_per_tool_call",
    "episode/model_tokens",
    "episode/environment_tokens",
    "episode/turn_limit_fraction",
    "reward/environment",
}


def stats(turns: int, calls: int, errors: int, seconds: float, limit: bool, env_reward: float = 0.0):
    return EpisodeStats(turns, calls, errors, seconds, 3 * turns, 2 * calls, limit, env_reward)


def test_episode_metrics_are_means_per_episode_and_sums_of_tool_seconds():
    metrics = episode_metrics(
        [stats(1, 0, 0, 0.0, False), stats(3, 2, 1, 0.5, True, 1.0), None, stats(2, 2, 0, 0.3, False)]
    )
    assert metrics == pytest.approx(
        {
            "episode/turns": 2.0,
            "episode/tool_calls": 4 / 3,
            "episode/tool_errors": 1 / 3,
            "episode/with_tool_calls": 2 / 3,
            "episode/tool_seconds": 0.8,
            "episode/tool_seconds_mean": 0.8 / 3,
            "episode/seconds_per_tool_call": 0.2,
            "episode/model_tokens": 6.0,
            "episode/environment_tokens": 8 / 3,
            "episode/turn_limit_fraction": 1 / 3,
            "reward/environment": 1 / 3,
        }
    )
    assert "episode/seconds_per_tool_call" not in episode_metrics([stats(1, 0, 0, 0.0, False)])


def test_a_single_turn_step_reports_no_episode_metric():
    plain = StepBatch(groups=[group((1,), [(2,), (3,)], [1.0, 0.0])]).metrics()
    assert not {k for k in plain if k.startswith("episode/")} and "reward/environment" not in plain
    episode = ScoredCompletion(
        (2, 3), (-0.1, 0.0), 1.0, loss_mask=(True, False), episode=stats(2, 1, 0, 0.1, False)
    )
    mixed = ScoredGroup("q", (1,), (episode, ScoredCompletion((4,), (-0.2,), 0.0)), policy_version=0)
    assert StepBatch(groups=[mixed]).metrics()["episode/turns"] == 2.0  # the single-turn one is skipped


def test_the_end_table_shows_first_last_and_mean():
    table = EpisodeTable()
    table.add({"reward": 1.0, "timing/step": 1.0})  # a step without episodes is not counted
    table.add(episode_metrics([stats(1, 1, 1, 0.2, False)]))
    table.add(episode_metrics([stats(3, 3, 0, 0.3, True)]))
    console = Console(record=True, width=120)
    console.print(table.table())
    text = console.export_text()
    assert "2 steps with multi-turn episodes" in text
    row = next(line for line in text.splitlines() if "episode/tool_calls" in line)
    assert [cell.strip() for cell in row.split("│")[1:-1]] == ["episode/tool_calls", "1", "3", "2"]
    table.add(episode_metrics([stats(1, 0, 0, 0.0, False)]))  # no tool call: no seconds_per_tool_call
    assert table.means()["episode/seconds_per_tool_call"] == 0.15  # (0.2 + 0.1) / the 2 steps with it


class EpisodeRollout(RecordingRollout):
    """Answers every prompt with episodes: model turn, a 2-token tool result, one more model token."""

    def make_group(self, prompt, group_size: int) -> rollout_pb2.RolloutGroup:
        message = super().make_group(prompt, group_size)
        environment = self.requests[-1].environment.name if self.requests else ""
        if prompt.environment == "none" or not (prompt.environment or environment):
            return message
        for i, completion in enumerate(message.completions):
            model = len(completion.token_ids) + 1
            completion.token_ids[:] = [*completion.token_ids[:-1], 41, 42, *completion.token_ids[-1:], 43]
            completion.logprobs[:] = [*completion.logprobs[:-1], 0.0, 0.0, -0.5, -0.5]
            completion.loss_mask[:] = [True] * (model - 2) + [False, False, True, True]
            if prompt.id.endswith("@0"):  # one malformed episode: a mask shorter than the tokens
                completion.loss_mask.pop()
            completion.episode.CopyFrom(
                rollout_pb2.EpisodeStats(
                    turns=2,
                    tool_calls=1,
                    tool_errors=i % 2,
                    tool_seconds=0.01,
                    model_tokens=model,
                    environment_tokens=2,
                    turn_limit_reached=i == 0,
                )
            )
        return message


def test_a_run_on_episodes_logs_episode_metrics_everywhere(tmp_path: Path, caplog):
    model_dir = save_tiny_model(tmp_path / "model")
    cfg = config(
        model_dir,
        tmp_path / "run",
        rollout={"environment": {"name": "calculator", "max_turns": 2}},
        loss={"beta": 0.04, "sampler_correction": {"mode": "truncate", "level": "sequence"}},
        train={"max_steps": 2},
    ).model_copy(update={"tensorboard": True})
    service = EpisodeRollout(rewards_for=lambda prompt_id, index: float(index % 2))

    async def scenario():
        server = await start_recording_rollout(service)
        try:
            await run_training(cfg, token_prompts(6), addresses=[server.address], progress=False)
        finally:
            await server.stop(0)

    with caplog.at_level(logging.INFO, logger="grpo_learner"):
        asyncio.run(scenario())
    assert (
        service.requests[0].environment.name == "calculator"
        and service.requests[0].environment.max_turns == 2
    )
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        assert set(record) >= EPISODE_KEYS, sorted(EPISODE_KEYS - set(record))
        assert record["episode/turns"] == 2.0 and record["episode/environment_tokens"] == 2.0
        assert record["episode/turn_limit_fraction"] == 0.25 and record["episode/tool_errors"] == 0.5
        assert torch.isfinite(torch.tensor([record["kl"], record["entropy"], record["grad_norm"]])).all()
    assert records[0]["groups/dropped_invalid"] == 1  # the bad mask: dropped and counted, not a crash
    assert "loss_mask has" in caplog.text
    assert "episodes, mean per step" in caplog.text  # the end-of-run summary (progress off: the log)
    (events,) = (tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*")
    assert set(EventAccumulator(str(events)).Reload().Tags()["scalars"]) >= EPISODE_KEYS
