"""Per-phase timing of every step: in metrics.jsonl, TensorBoard and the end-of-run table."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import torch
from grpo_learner.monitoring.metrics import TimingTotals
from grpo_learner.training.loop import run_training
from learner_fixtures import save_tiny_model, token_prompts
from recording_rollout import RecordingRollout, start_recording_rollout
from rich.console import Console
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_loop import config

torch.set_num_threads(1)

LEARNER_OWN = ("timing/wait_rollouts", "timing/update", "timing/push", "timing/checkpoint")
UPDATE_SPLIT = ("timing/forward", "timing/backward", "timing/optimizer")


def test_every_step_logs_its_phases_and_they_fit_in_the_step(tmp_path: Path):
    model_dir = save_tiny_model(tmp_path / "model")
    prompts = token_prompts(6)
    cfg = config(
        model_dir,
        tmp_path / "run",
        loss={"beta": 0.04, "num_iterations": 2},  # reference and pi_old forwards count too
        train={"max_steps": 2},
        checkpoint={"interval": 1},
    ).model_copy(update={"tensorboard": True})
    service = RecordingRollout(rewards_for=lambda prompt_id, index: float(index % 2))

    async def scenario():
        server = await start_recording_rollout(service)
        try:
            await run_training(cfg, prompts, addresses=[server.address], progress=False)
        finally:
            await server.stop(0)

    asyncio.run(scenario())
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        names = (*LEARNER_OWN, *UPDATE_SPLIT, "timing/step")
        assert all(record[name] >= 0 for name in names), {n: record.get(n) for n in names}
        assert record["timing/update"] > 0 and record["timing/push"] > 0
        assert sum(record[name] for name in LEARNER_OWN) <= record["timing/step"]
        assert sum(record[name] for name in UPDATE_SPLIT) <= record["timing/update"]
        # the whole loop's rate (the update alone is tokens_per_second)
        assert record["tokens/trained_per_second"] == record["tokens/trained"] / record["timing/step"]
        assert record["tokens/trained_per_second"] < record["tokens_per_second"]
        # the rollout side's seconds, from the groups (RolloutGroup.generate_seconds / score_seconds)
        assert record["timing/generate"] == 0.25 and record["timing/score"] == 0.05
    (events,) = (tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*")
    scalars = EventAccumulator(str(events)).Reload().Tags()["scalars"]
    assert {*LEARNER_OWN, *UPDATE_SPLIT, "timing/step"} <= set(scalars)


def test_the_end_of_run_table_shows_each_phase_and_its_share_of_the_step():
    totals = TimingTotals()
    for update in (0.5, 0.7):
        totals.add(
            {"timing/step": 1.0, "timing/update": update, "timing/forward": 0.2, "timing/generate": 3.0}
        )
    totals.add({"reward": 1.0})  # a record without timing (e.g. the step-0 evaluation) is not a step
    console = Console(record=True, width=100)
    console.print(totals.table())
    text = console.export_text()
    assert "2 steps: where the time went" in text
    assert "update" in text and "0.600" in text and "60%" in text
    assert "forward" in text and "20%" in text
    assert "generate" in text and "3.000" in text and "300%" not in text


def test_rollout_timing_takes_the_longest_batch_behind_the_groups():
    from grpo.v1 import rollout_pb2
    from grpo_learner.data.rollout_data import group_from_proto
    from grpo_learner.monitoring.phase_timer import rollout_timing

    def group(prompt_id: str, generate: float, score: float):
        completion = rollout_pb2.Completion(token_ids=[5], logprobs=[-0.5], reward=1.0)
        message = rollout_pb2.RolloutGroup(
            prompt_id=prompt_id,
            prompt_token_ids=[1, 2],
            completions=[completion, completion],
            generate_seconds=generate,
            score_seconds=score,
        )
        return group_from_proto(message)

    groups = [group("a", 1.5, 0.2), group("b", 2.5, 0.1)]
    assert rollout_timing(groups) == {"timing/generate": 2.5, "timing/score": 0.2}
    assert rollout_timing([]) == {}


def test_the_embedded_table_shows_the_learners_phase_split(tmp_path: Path):
    from grpo_learner.embedded.report import phase_split

    lines = [
        {
            "step": 1,
            "timing/step": 2.0,
            "timing/wait_rollouts": 1.0,
            "timing/update": 0.5,
            "timing/push": 0.1,
        },
        {
            "step": 2,
            "timing/step": 2.0,
            "timing/wait_rollouts": 0.5,
            "timing/update": 0.7,
            "timing/push": 0.3,
        },
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert phase_split(tmp_path) == "0.75 / 0.60 / 0.20"
