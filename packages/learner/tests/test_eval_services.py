"""`grpo eval` against real services: reward + rollout processes on loopback, real tiny models.

The models are "bigram" Qwen2s built from a config: attention and MLP outputs are zeroed, so the
next token depends only on the current one through the lm_head, which is set by hand. After
`\\boxed{` one model says 7 (or, sampled, 0.5 or \\frac12), the other says 8: what each gets right
is known in advance, and sampling produces answers that differ as strings but not as numbers.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from grpo_learner.cli import main
from grpo_learner.embedded.model import tiny_qwen2_config
from grpo_learner.embedded.tokenizer import build_tokenizer
from grpo_learner.eval.buckets import assign_buckets, reward_service_judge
from grpo_learner.eval.comparison import paired_bootstrap
from grpo_learner.eval.estimators import NO_ANSWER
from grpo_learner.local.service_processes import ServiceProcess, find_executable, start_service
from transformers import AutoModelForCausalLM, GenerationConfig

OFF = -30.0
LIGHT_SERVICES = [
    "--set",
    "local_services.reward_workers=1",
    "--set",
    "local_services.torch_threads=1",
]  # logit of every transition not listed

# question -> reference; the 7-model's greedy answer is right on the first only, the 8-model's on
# the next two, and sampled answers 0.5 / \frac12 are right on "1/2=".
PROBLEMS = {"3+4=": "7", "2*4=": "8", "9-1=": "8", "1/2=": "\\frac{1}{2}", "1+1=": "2", "5+5=": "10"}


def bigram_model(directory: Path, after_boxed: dict[str, float]) -> Path:
    """Save a tokenizer + model that writes `\\boxed{<answer>}` with the first token from `after_boxed`."""
    tokenizer = build_tokenizer()
    vocab = tokenizer.get_vocab()
    config = tiny_qwen2_config(tokenizer)  # the embedded default's shape, with its own lm_head
    config.tie_word_embeddings = False
    hidden = config.hidden_size
    assert config.vocab_size <= hidden  # one-hot embeddings
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    chain = {"=": {"\\boxed{": 20.0}, "\\boxed{": after_boxed, "0": {".": 20.0}, ".": {"5": 20.0},
             "\\frac": {"1": 20.0}, "1": {"2": 20.0}}  # fmt: skip
    for answer_end in ("7", "8", "5", "2"):
        chain[answer_end] = {"}": 20.0}
    chain["}"] = {tokenizer.eos_token: 20.0}
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                parameter.zero_()  # the residual stream is the token's embedding, unchanged
        model.model.embed_tokens.weight.copy_(torch.eye(config.vocab_size, hidden))
        head = torch.full((config.vocab_size, hidden), OFF)
        for current, nexts in chain.items():
            for token, logit in nexts.items():
                head[vocab[token], vocab[current]] = logit
        model.lm_head.weight.copy_(head / math.sqrt(hidden))  # the final RMSNorm scales e_t by sqrt(H)
    model.generation_config = GenerationConfig(max_new_tokens=8, eos_token_id=tokenizer.eos_token_id)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval")
    data = root / "problems.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in PROBLEMS.items()))
    return {
        "sevens": bigram_model(root / "sevens", {"7": 1.0, "0": 0.7, "\\frac": 0.7}),
        "eights": bigram_model(root / "eights", {"8": 1.0}),
        "data": data,
        "root": root,
    }


@pytest.fixture(scope="module")
def reward_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    argv = [find_executable("grpo-reward"), "serve", "--workers", "1"]
    service = start_service("reward", argv, tmp_path_factory.mktemp("reward"))
    yield service
    service.stop()


def test_answers_the_verifier_calls_equivalent_share_a_vote_bucket(reward_service: ServiceProcess) -> None:
    answers = [["7", "0.5", "\\frac12", "1/2", "7", None, "\\frac{2}{4}", "0.25"], ["x+1", "1+x", "x"]]
    judge = reward_service_judge(reward_service.address)
    buckets = asyncio.run(assign_buckets(answers, ["", ""], judge))
    assert buckets == [[0, 1, 1, 1, 0, NO_ANSWER, 1, 2], [0, 0, 1]]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_grpo_eval_writes_samples_whose_verdicts_give_the_summary(assets: dict[str, Path]) -> None:
    out = assets["root"] / "out-sevens"
    argv = ["eval", "--model", str(assets["sevens"]), "--data", str(assets["data"]), "--greedy",
            "--samples", "8", "--k", "1,4,8", "--out", str(out), "--no-progress",
            *LIGHT_SERVICES]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    rows = _rows(out / "samples.jsonl")
    greedy = [r for r in rows if r["kind"] == "greedy"]
    sampled = [r for r in rows if r["kind"] == "sampled"]
    assert len(greedy) == len(PROBLEMS) and len(sampled) == 8 * len(PROBLEMS)

    # greedy: the 7-model says \boxed{7} everywhere, right on "3+4=" only
    assert {r["extracted"] for r in greedy} == {"7"}
    assert summary["greedy_accuracy"] == pytest.approx(sum(r["correct"] for r in greedy) / len(greedy))
    assert summary["greedy_accuracy"] == pytest.approx(1 / len(PROBLEMS))

    by_problem: dict[str, list[dict]] = {}
    for r in sorted(sampled, key=lambda r: (r["problem_id"], r["sample_index"])):
        by_problem.setdefault(r["problem_id"], []).append(r)
    assert summary["pass@1"] == pytest.approx(sum(r["correct"] for r in sampled) / len(sampled))
    for k in (4, 8):
        expected = sum(
            1 - math.comb(8 - sum(r["correct"] for r in rs), k) / math.comb(8, k)
            for rs in by_problem.values()
        ) / len(by_problem)
        assert summary[f"pass@{k}"] == pytest.approx(expected)
    # the half problem: 0.5 and \frac12 share a bucket, 7 has its own
    half = by_problem[str(list(PROBLEMS).index("1/2="))]
    halves = {r["bucket"] for r in half if r["extracted"] in ("0.5", "\\frac12")}
    sevens = {r["bucket"] for r in half if r["extracted"] == "7"}
    assert len(halves) == 1 and len(sevens) <= 1 and not halves & sevens
    for k in (1, 4, 8):
        wins = 0
        for rs in by_problem.values():
            votes = Counter(r["bucket"] for r in rs[:k] if r["bucket"] != NO_ANSWER)
            if votes:
                top = max(votes.values())
                winner = next(r for r in rs[:k] if votes.get(r["bucket"]) == top)  # first to appear
                wins += winner["correct"]
        assert summary[f"maj@{k}"] == pytest.approx(wins / len(by_problem))
    assert summary["problems"] == len(PROBLEMS) and summary["samples_per_problem"] == 8
    assert summary["sampling"]["max_new_tokens"] == 8  # from the model's generation_config.json


def test_comparing_two_checkpoints_reports_the_paired_bootstrap_interval(assets: dict[str, Path]) -> None:
    out = assets["root"] / "out-compare"
    argv = ["eval", "--model", str(assets["sevens"]), "--model", str(assets["eights"]), "--data",
            str(assets["data"]), "--greedy", "--out", str(out), "--no-progress", "--seed", "5",
            *LIGHT_SERVICES]  # fmt: skip
    assert main(argv) == 0
    comparison = json.loads((out / "comparison.json").read_text())
    greedy = comparison["models"][0]["metrics"]["greedy_accuracy"]
    per_model = [
        {r["problem_id"]: float(r["correct"]) for r in _rows(out / name / "samples.jsonl")}
        for name in ("model_1", "model_2")
    ]
    ids = sorted(per_model[0])
    a, b = [per_model[0][i] for i in ids], [per_model[1][i] for i in ids]
    assert greedy["baseline"] == pytest.approx(1 / 6) and greedy["value"] == pytest.approx(2 / 6)
    assert greedy["delta"] == pytest.approx(1 / 6)
    low, high = greedy["ci95"]
    assert low <= greedy["delta"] <= high
    ordered = [float(r["correct"]) for r in _rows(out / "model_1" / "samples.jsonl")]
    other = [float(r["correct"]) for r in _rows(out / "model_2" / "samples.jsonl")]
    assert sorted(zip(ordered, other, strict=True)) == sorted(zip(a, b, strict=True))
    assert (low, high) == pytest.approx(paired_bootstrap(ordered, other, seed=5))


def test_grpo_train_with_an_eval_section_logs_eval_metrics_at_step_0_and_the_end(
    assets: dict[str, Path],
) -> None:
    run_dir = assets["root"] / "train-run"
    argv = ["train", "--model", str(assets["sevens"]), "--data", str(assets["data"]), "--max-steps", "2",
            "--run-dir", str(run_dir), "--no-progress", *LIGHT_SERVICES,
            "--set", "data.apply_chat_template=false", "--set", "tensorboard=false",
            "--set", "train.device=cpu", "--set", "rollout.group_size=2",
            "--set", "rollout.prompts_per_step=2",
            "--set", "rollout.sampling.max_new_tokens=8", "--set", f"eval.data={assets['data']}",
            "--set", "eval.every=5", "--set", "eval.greedy=true", "--set", "eval.samples=4",
            "--set", "eval.k=[4]"]  # fmt: skip
    assert main(argv) == 0
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evaluated = {r["step"]: r for r in records if "eval/greedy_accuracy" in r}
    assert sorted(evaluated) == [0, 2]  # step 0 and the last step (every=5 is beyond the run)
    for record in evaluated.values():
        assert record["eval/greedy_accuracy"] == pytest.approx(1 / len(PROBLEMS))  # \boxed{7} everywhere
        assert {"eval/pass@1", "eval/pass@4", "eval/maj@4"} <= set(record)
