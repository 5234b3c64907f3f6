"""Model-based reward terms: the judge against a real chat-completions server, the reward model's
batching, truncation, out-of-memory and batch time limit, and the operator's flags.

The judge tests talk HTTP to `openai_chat_server` (a tiny real transformers model behind the OpenAI
route); the reward model is the embedded tiny shape with a one-label head, untrained (its scores
are arbitrary, the mechanics are what is tested here; tests/test_custom_rewards.py trains through it).
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from grpo_learner.embedded.reward_model import build_reward_model
from grpo_learner.embedded.tokenizer import build_tokenizer
from grpo_reward.cli import main
from grpo_reward.models.config import JudgeConfig, RewardModelConfig
from grpo_reward.models.judge import Judge, Unparsable, parse_score
from grpo_reward.models.reward_model import RewardModel
from grpo_reward.models.scoring import score_pairs, split_on_oom
from grpo_reward.verifier import Item
from openai_chat_server import chat_server

DIGIT = r"^\s*(\d+)\s*$"  # the digits model's whole reply is the score
ITEMS = [Item("8 kg", "8", prompt="5 kg+3 kg="), Item("8", "8", prompt="5 kg+3 kg="), Item("x", "1")]


def judge(url: str, **settings: object) -> Judge:
    values = {"name": "j", "url": url, "score_pattern": DIGIT, "max_score": 9, "max_tokens": 1}
    return Judge(JudgeConfig(**{**values, **settings}))


def test_a_judge_grades_every_item_through_a_real_chat_completions_server() -> None:
    with chat_server() as (url, route):
        verdicts = asyncio.run(judge(url).score_batch(ITEMS))
    assert route.requests == len(ITEMS)
    for verdict in verdicts:
        assert not verdict.timed_out, verdict.reason
        score = verdict.components["score"]
        assert score == int(score) and 0 <= score <= 9
        assert verdict.reward == pytest.approx(score / 9)
        assert verdict.components["attempts"] == 1 and verdict.components["latency_s"] > 0


def test_one_judge_serves_several_event_loops() -> None:
    with chat_server() as (url, route):
        one = judge(url)
        first = asyncio.run(one.score_batch(ITEMS[:1]))
        second = asyncio.run(one.score_batch(ITEMS[:1]))  # a client bound to the closed loop failed here
    assert not first[0].timed_out and not second[0].timed_out, second[0].reason
    assert route.requests == 2


def test_a_judgement_without_a_score_is_an_error_carrying_the_judges_text() -> None:
    with chat_server() as (url, _):
        verdicts = asyncio.run(judge(url, score_pattern=r"SCORE:\s*(\d+)", max_tokens=4).score_batch(ITEMS))
    for verdict in verdicts:
        assert verdict.timed_out and verdict.reward == 0  # no information, never a silent 0
        assert "no score matching" in verdict.reason
        text = verdict.reason.rsplit("judgement: ", 1)[1].strip("'")
        assert len(text) == 4 and text.isdigit()  # the judge's own 4 generated digits


def test_a_score_out_of_range_is_an_error_not_a_clipped_reward() -> None:
    with chat_server() as (url, _):
        verdicts = asyncio.run(judge(url, max_tokens=3, min_score=1).score_batch(ITEMS[:1]))
    (verdict,) = verdicts
    assert verdict.timed_out and "outside [1, 9]" in verdict.reason, verdict.reason


def test_a_judge_that_times_out_is_retried_then_reported() -> None:
    with chat_server(delay_s=1.0) as (url, route):
        late = judge(url, timeout_s=0.2, retries=1, backoff_s=0.01)
        (verdict,) = asyncio.run(late.score_batch(ITEMS[:1]))
    assert verdict.timed_out
    assert "no reply within 0.2 s (after 2 attempts)" in verdict.reason
    assert route.received == 2  # both attempts reached the server


def test_an_overloaded_judge_is_retried_with_backoff_until_it_answers() -> None:
    with chat_server(fail_first=2) as (url, _):
        (verdict,) = asyncio.run(judge(url, retries=2, backoff_s=0.01).score_batch(ITEMS[:1]))
    assert not verdict.timed_out, verdict.reason
    assert verdict.components["attempts"] == 3


def test_a_judge_holds_at_most_its_concurrency_in_flight() -> None:
    with chat_server(delay_s=0.2) as (url, route):
        asyncio.run(judge(url, concurrency=2).score_batch(ITEMS * 3))
    assert route.requests == 9
    assert route.most_in_flight == 2


def test_a_judge_that_cannot_be_reached_is_an_error_naming_the_endpoint() -> None:
    (verdict,) = asyncio.run(judge("http://127.0.0.1:9", retries=0).score_batch(ITEMS[:1]))
    assert verdict.timed_out and "cannot reach http://127.0.0.1:9/chat/completions" in verdict.reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [("fine.\nSCORE: 7", 7.0), ("SCORE: 2\nno, SCORE: 9", 9.0), ("SCORE: 3.5", 3.5)],
)
def test_the_last_score_line_is_the_score(text: str, expected: float) -> None:
    assert parse_score(text, JudgeConfig.model_fields["score_pattern"].default, 0, 10) == expected


@pytest.mark.parametrize("text", ["SCORE: 11", "SCORE: -1", "score seven", "SCORE: 7 points", ""])
def test_anything_but_one_score_in_range_is_unparsable(text: str) -> None:
    with pytest.raises(Unparsable):
        parse_score(text, JudgeConfig.model_fields["score_pattern"].default, 0, 10)


@pytest.fixture(scope="module")
def tiny_reward_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, object, Path]:
    tokenizer = build_tokenizer()
    model = build_reward_model(tokenizer, seed=0).eval()
    model.config.pad_token_id = tokenizer.pad_token_id
    folder = tmp_path_factory.mktemp("rm")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, tokenizer, folder


def test_a_reward_model_scores_a_batch_in_one_forward_pass_per_batch_size(tiny_reward_model) -> None:
    model, tokenizer, _ = tiny_reward_model
    calls = []
    hook = model.register_forward_hook(lambda module, args, kwargs_or_out: calls.append(1))
    try:
        pairs = [(f"{i}+1=", f"{i + 1} kg") for i in range(10)]
        scored = score_pairs(model, tokenizer, pairs, max_length=64, batch_size=4, device="cpu")
    finally:
        hook.remove()
    assert len(calls) == 3  # ceil(10 / 4), not 10
    assert all(s.reward is not None and math.isfinite(s.reward) and not s.truncated for s in scored)
    # batching and padding do not change an item's score
    (alone,) = score_pairs(model, tokenizer, pairs[7:8], max_length=64, batch_size=4, device="cpu")
    assert alone.reward == pytest.approx(scored[7].reward, abs=1e-4)


def test_a_huge_input_is_cut_to_the_context_and_flagged(tiny_reward_model) -> None:
    model, tokenizer, _ = tiny_reward_model
    pairs = [("1+1=", "2"), ("1+1=", "2" * 1_000_000)]
    short, huge = score_pairs(model, tokenizer, pairs, max_length=16, batch_size=8, device="cpu")
    assert not short.truncated and huge.truncated and huge.reward is not None
    # the end is kept: a huge prefix before the same 16 tokens scores the same
    (same,) = score_pairs(
        model, tokenizer, [("", "9" * 5000 + "2" * 16)], max_length=16, batch_size=1, device="cpu"
    )
    assert same.reward == pytest.approx(huge.reward, abs=1e-4)


def test_out_of_memory_costs_only_the_item_that_cannot_fit() -> None:
    calls = []

    def forward(rows):
        calls.append(len(rows))
        if any(len(row) > 100 for row in rows):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [float(len(row)) for row in rows]

    rows = [[1] * 5, [1] * 500, [1] * 7, [1] * 9]
    assert split_on_oom(forward, rows) == [5.0, None, 7.0, 9.0]
    assert calls == [4, 2, 1, 1, 2]  # halves, then singles, only where the failure was


def test_a_batch_over_its_time_limit_restarts_the_process_and_the_next_batch_is_scored(
    tiny_reward_model,
) -> None:
    _, _, folder = tiny_reward_model
    model = RewardModel(RewardModelConfig(name="rm", path=str(folder), max_length=64, batch_timeout_s=0.001))
    try:
        first = model._process.pid
        verdicts = asyncio.run(model.score_batch([Item("7" * 60, "7", prompt="1+1=")] * 256))
        assert all(v.timed_out for v in verdicts)
        assert "no answer within the batch limit of 0.001 s" in verdicts[0].reason
        assert model.restarts == 1 and model._process.pid != first
        model.config = model.config.model_copy(update={"batch_timeout_s": 120.0})
        verdicts = asyncio.run(model.score_batch(ITEMS))
        assert not any(v.timed_out for v in verdicts), verdicts[0].reason
        assert verdicts[0].components["truncated"] == 0
    finally:
        model.close()
    assert model._process is None


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--reward-model", "rm"], "--reward-model 'rm': expected NAME=VALUE"),
        (["--reward-model", "rm=/no/such/dir"], "no such directory"),
        (["--judge", "j=ftp://x"], "must be http(s)://"),
        (["--reward-model", "1rm=org/name"], "must start with a letter"),
    ],
)
def test_serve_refuses_a_bad_model_flag_before_starting(flags, message, capsys) -> None:
    assert main(["serve", "--port", "0", *flags]) == 2
    assert message in capsys.readouterr().err


def test_a_reward_model_that_cannot_load_stops_serve_with_its_reason(tmp_path: Path, capsys) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "qwen2", "num_labels": 3}')
    assert main(["serve", "--port", "0", "--workers", "1", "--reward-model", f"rm={tmp_path}"]) == 2
    assert "reward model 'rm'" in (err := capsys.readouterr().err) and "has 3 labels" in err


def test_the_plain_verifier_and_its_service_import_without_torch() -> None:
    code = (
        "import sys, grpo_reward, grpo_reward.cli, grpo_reward.service.server, grpo_reward.models.config\n"
        "heavy = sorted({'torch', 'transformers', 'httpx'} & set(sys.modules))\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
