"""The learner's [reward] section and what it sends: components, per-row fields and tasks, timeouts.

Config checks are pure; the feed runs against a real grpc.aio rollout stand-in (recording_rollout)
whose completions can be marked `reward_timed_out`, as the rollout service copies ScoreResult.timed_out.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from grpo_common.config import ConfigError
from grpo_learner.config import LearnerConfig, RolloutConfig, load_learner_config
from grpo_learner.data.prompts import ListPromptSource, PromptCursor, PromptItem, load_prompt_file
from grpo_learner.data.sources import GroupFilter
from grpo_learner.rollouts.client import RolloutClient, reward_spec_to_proto
from grpo_learner.rollouts.feed import RolloutFeed
from recording_rollout import RecordingRollout, start_recording_rollout

COMPONENTS = [
    {"name": "correctness", "weight": 1.0},
    {"name": "format", "weight": 0.1},
    {"name": "length", "weight": 1.0, "max_completion_tokens": 256, "overlong_buffer_tokens": 64},
    {"name": "my_rewards:brevity", "weight": 0.5},
]


def learner_config(**sections) -> LearnerConfig:
    return LearnerConfig.model_validate({"model": {"name_or_path": "m"}, **sections})


# --- the section ------------------------------------------------------------------------------


def test_reward_section_becomes_the_request_spec_with_v1_0_fields_mirrored():
    cfg = learner_config(reward={"components": COMPONENTS, "timeout_s": 2.5, "fallback_last_number": True})
    spec = reward_spec_to_proto(cfg.reward)
    assert [(c.name, c.weight) for c in spec.components] == [(c["name"], c["weight"]) for c in COMPONENTS]
    length = spec.components[2]
    assert (length.max_completion_tokens, length.overlong_buffer_tokens) == (256, 64)
    assert spec.timeout_s == 2.5 and spec.fallback_last_number
    # A v1.0 reward service (no `components`) computes the same built-in terms from fields 1-5.
    assert spec.HasField("correctness_weight") and spec.correctness_weight == 1.0
    assert (spec.format_weight, spec.length_weight) == (pytest.approx(0.1), 1.0)
    assert (spec.max_completion_tokens, spec.overlong_buffer_tokens) == (256, 64)


def test_no_components_sends_correctness_weight_one_explicitly():
    spec = reward_spec_to_proto(learner_config().reward)
    assert list(spec.components) == []
    assert spec.HasField("correctness_weight") and spec.correctness_weight == 1.0  # not proto3's 0
    without_correctness = reward_spec_to_proto(learner_config(reward={"components": [COMPONENTS[1]]}).reward)
    assert without_correctness.HasField("correctness_weight") and without_correctness.correctness_weight == 0


@pytest.mark.parametrize(
    ("reward", "message"),
    [
        ({"components": [{"name": "length", "weight": 1.0}]}, "length component needs max_completion_tokens"),
        (
            {"components": [{"name": "length", "max_completion_tokens": 8, "overlong_buffer_tokens": 9}]},
            "overlong_buffer_tokens 9 exceeds max_completion_tokens 8",
        ),
        ({"components": [{"name": "format", "max_completion_tokens": 8}]}, "apply to 'length' only"),
        ({"components": [{"name": "format"}, {"name": "format"}]}, r"repeated: \['format'\]"),
        ({"components": [{"name": "format", "weight": float("nan")}]}, "reward.components.0.weight"),
        ({"components": [{"name": "a", "weight": 1e308}, {"name": "b", "weight": 1e308}]}, "not a finite"),
        ({"on_timeout": "retry"}, "reward.on_timeout"),
        ({"timeout_s": 11}, "reward.timeout_s"),
    ],
)
def test_bad_reward_sections_are_refused_naming_the_field(reward, message):
    with pytest.raises(ConfigError, match=message):
        load_learner_config(overrides={"model.name_or_path": "m", "reward": reward}, environ={})


def test_weighting_a_component_not_computed_is_refused_naming_it():
    with pytest.raises(
        ConfigError, match=r"reward_weights names \['format'\].*add them to reward.components"
    ):
        load_learner_config(
            overrides={"model.name_or_path": "m", "loss.advantage.reward_weights": {"format": 0.1}},
            environ={},
        )
    cfg = learner_config(
        reward={"components": COMPONENTS[:2]},
        loss={"advantage": {"reward_weights": {"correctness": 1.0, "format": 0.1}}},
    )
    assert cfg.loss.advantage.reward_weights == {"correctness": 1.0, "format": 0.1}


def test_normalize_then_sum_defaults_to_the_component_weights():
    cfg = learner_config(
        reward={"components": COMPONENTS}, loss={"advantage": {"combine": "normalize_then_sum"}}
    )
    assert cfg.loss.advantage.reward_weights == {c["name"]: c["weight"] for c in COMPONENTS}
    summed = learner_config(reward={"components": COMPONENTS})
    assert summed.loss.advantage.reward_weights == {}  # the service's weighted sum is the reward


def test_data_task_is_read_as_reward_task_and_a_disagreement_is_refused():
    assert learner_config(data={"task": "choice"}).reward.task == "choice"
    assert learner_config(data={"task": "exact"}, reward={"task": "exact"}).reward.task == "exact"
    with pytest.raises(ValueError, match=r"data\.task 'choice' and reward\.task 'exact' disagree"):
        learner_config(data={"task": "choice"}, reward={"task": "exact"})


# --- per-row data ---------------------------------------------------------------------------


def test_extra_columns_become_fields_and_a_task_column_picks_the_task(tmp_path: Path):
    path = tmp_path / "mixed.jsonl"
    rows = [
        {"question": "2+2?", "answer": "4", "uid": "a", "level": 1},
        {"question": "pick", "answer": "B", "uid": "b", "task": "choice", "choices": ["x", "y"]},
        {"question": "f?", "answer": "-", "uid": "c", "task": "code", "tests": ["assert f() == 1"]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    source = load_prompt_file(path, id_field="uid", task="math")
    assert [source[i].task for i in range(3)] == ["math", "choice", "code"]
    assert [json.loads(source[i].fields_json) for i in range(3)] == [
        {"level": 1},
        {"choices": ["x", "y"]},
        {"tests": ["assert f() == 1"]},
    ]
    plain = load_prompt_file(path, id_field="uid", rows=[{"question": "q", "answer": "1", "uid": "z"}])
    assert plain[0].fields_json == "" and plain[0].task == ""
    drawn = PromptCursor(source, shuffle=False).item_at(4)
    assert (drawn.id, drawn.task, drawn.fields_json) == ("b@4", "choice", source[1].fields_json)


def test_rows_whose_fields_cannot_travel_are_refused_naming_the_row(tmp_path: Path):
    path = tmp_path / "p.jsonl"
    rows = [{"question": "q", "answer": "1"}, {"question": "q", "answer": "2", "notes": "x" * 100}]
    with pytest.raises(ValueError, match=r"row 1 \(id '1'\): its extra columns \['notes'\] are 1\d\d bytes"):
        load_prompt_file(path, rows=rows, max_fields_bytes=64)
    with pytest.raises(ValueError, match=r"row 0 \(id '0'\): its extra columns \['when'\] cannot be sent"):
        load_prompt_file(path, rows=[{"question": "q", "answer": "1", "when": object()}])
    with pytest.raises(ValueError, match=r"row 0 .*column 'task' must be a task name"):
        load_prompt_file(path, rows=[{"question": "q", "answer": "1", "task": 3}])


# --- the feed: spec and fields on the wire, timeouts ----------------------------------------


def feed_run(
    service: RecordingRollout,
    reward: dict,
    steps: int = 1,
    refill_rounds: int = 2,
    resume_from: dict | None = None,
    states: list[dict] | None = None,
):
    """Run `steps` batches of 3 prompts x 2 completions through a real feed; returns the batches.

    `resume_from`: a feed state to start from; `states` receives the feed's state at the end."""
    cfg = learner_config(reward=reward)
    prompts = ListPromptSource(
        [
            PromptItem(id=f"p{i}", reference="1", token_ids=(1, 2, 3 + i), fields_json=json.dumps({"k": i}))
            for i in range(8)
        ]
    )

    async def scenario():
        server = await start_recording_rollout(service)
        client = RolloutClient(
            [server.address],
            RolloutConfig(backoff_s=0.01),
            group_size=2,
            sampling=cfg.rollout.sampling,
            apply_chat_template=True,
            reward_spec=reward_spec_to_proto(cfg.reward),
        )
        group_filter = GroupFilter(2, 0, {"reward": 1.0}, on_timeout=cfg.reward.on_timeout)
        feed = RolloutFeed(
            client,
            PromptCursor(prompts, shuffle=False),
            group_filter,
            prompts_per_step=3,
            max_refill_rounds=refill_rounds,
        )
        if resume_from is not None:
            feed.load_state_dict(resume_from)
        try:
            batches = [await feed.next_batch(step, step) for step in range(steps)]
            if states is not None:
                states.append(feed.state_dict())
            return batches
        finally:
            await feed.close()
            await server.stop(0)

    return asyncio.run(scenario())


def test_every_request_carries_the_spec_and_each_prompt_its_fields():
    service = RecordingRollout()
    feed_run(service, {"components": COMPONENTS[:2]})
    assert service.requests
    for request in service.requests:
        assert [c.name for c in request.reward_spec.components] == ["correctness", "format"]
        for prompt in request.prompts:
            assert json.loads(prompt.fields_json) == {"k": int(prompt.id[1])}


def first_try_times_out(prompt_ids: set[str]):
    """Completion 1 of these prompts times out the first time each is asked, then scores normally."""
    asked: set[str] = set()

    def timed_out(prompt_id: str, index: int) -> bool:
        if prompt_id in asked:
            return False
        if index == 1:
            asked.add(prompt_id)
        return prompt_id in prompt_ids and index == 1

    return timed_out


def test_timed_out_groups_are_dropped_counted_and_their_prompt_resent_once():
    service = RecordingRollout(timed_out_for=first_try_times_out({"p1@1"}))
    (batch,) = feed_run(service, {})
    assert batch.metrics()["reward/timeouts"] == 1
    assert batch.dropped.get("timeout") == 1
    assert sorted(g.prompt_id for g in batch.groups) == ["p0@0", "p1@1", "p2@2"]  # p1 re-scored
    assert not any(c.timed_out for g in batch.groups for c in g.completions)
    asked = [p.id for r in service.requests for p in r.prompts]
    assert asked == ["p0@0", "p1@1", "p2@2", "p1@1"]


def test_a_prompt_that_times_out_again_is_dropped_for_good():
    service = RecordingRollout(timed_out_for=lambda prompt_id, index: prompt_id == "p1@1")
    (batch,) = feed_run(service, {})
    assert batch.dropped.get("timeout") == 2  # the first try and the one re-send
    assert batch.metrics()["reward/timeouts"] == 4  # completions: 2 per group
    assert sorted(g.prompt_id for g in batch.groups) == ["p0@0", "p2@2", "p3@3"]  # a new prompt instead


def test_a_resumed_run_remembers_which_prompts_were_already_resent():
    service = RecordingRollout(timed_out_for=first_try_times_out({"p1@1"}))
    states: list[dict] = []
    feed_run(service, {}, states=states)
    (saved,) = states
    assert saved["timed_out"] == [1] and saved["position"] == 3  # p1 was re-sent, no new draw
    # After a restart from a checkpoint taken then, p1's draw times out again: it had its re-send.
    again = RecordingRollout(timed_out_for=lambda prompt_id, index: prompt_id == "p1@1")
    (batch,) = feed_run(
        again, {}, resume_from={"position": 0, "pending": [], "timed_out": saved["timed_out"]}
    )
    assert batch.dropped.get("timeout") == 1
    assert [p.id for r in again.requests for p in r.prompts] == ["p0@0", "p1@1", "p2@2", "p3@3"]


def test_on_timeout_zero_trains_on_the_timed_out_completion_as_reward_zero():
    service = RecordingRollout(
        rewards_for=lambda prompt_id, index: 1.0,
        timed_out_for=lambda prompt_id, index: prompt_id == "p1@1" and index == 1,
    )
    (batch,) = feed_run(service, {"on_timeout": "zero"})
    assert "timeout" not in batch.dropped and batch.metrics()["reward/timeouts"] == 1
    (kept,) = [g for g in batch.groups if g.prompt_id == "p1@1"]
    assert [c.reward for c in kept.completions] == [1.0, 0.0] and kept.completions[1].timed_out
    assert kept.completions[1].component("correct") == 0.0  # no verdict: every component reads 0


def test_every_component_is_logged_as_rewards_name_mean():
    service = RecordingRollout(rewards_for=lambda prompt_id, index: float(index))
    (batch,) = feed_run(service, {})
    assert batch.metrics()["rewards/correct/mean"] == pytest.approx(0.5)


def test_a_reward_component_the_service_did_not_compute_makes_the_group_invalid():
    requires = GroupFilter(2, 0, {"reward": 1.0}, required_components=("correct",))
    service = RecordingRollout()  # computes the component "correct" only
    (batch,) = feed_run(service, {}, refill_rounds=0)
    assert all(requires.reject_reason(g, 0) is None for g in batch.groups)
    bare = GroupFilter(2, 0, {"reward": 1.0}, required_components=("brevity",))
    assert {bare.reject_reason(g, 0) for g in batch.groups} == {"invalid"}
