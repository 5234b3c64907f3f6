"""The pieces of the distributed learner that need no second process: sharding, the loss shares
the ranks add up, the batch codec, the world-size check and the torchrun command line."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from grpo_learner.config import OptimConfig
from grpo_learner.data.rollout_data import ScoredCompletion, ScoredGroup
from grpo_learner.data.synthetic import synthetic_groups
from grpo_learner.distributed.batch_codec import decode_update, encode_update
from grpo_learner.distributed.sequence_shards import balanced_shards
from grpo_learner.distributed.torchrun_launch import torchrun_command, without_nproc
from grpo_learner.grpo.losses import LOSSES
from grpo_learner.grpo.optim import build_optimizer, build_scheduler
from grpo_learner.grpo.update import Trainer, prepare_batch
from grpo_learner.training.checkpoint import CheckpointMismatch, TrainerState, check_world_size
from learner_fixtures import loss_settings, tiny_qwen2, update_config

torch.set_num_threads(1)
CPU = torch.device("cpu")


def test_balanced_shards_deal_every_sequence_once_with_counts_within_one():
    lengths = [10, 9, 8, 1, 1, 1, 7]
    shards = balanced_shards(lengths, 3)
    assert sorted(i for shard in shards for i in shard) == list(range(7))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert shards == balanced_shards(lengths, 3)  # every rank computes the same deal
    skewed = [9, 1, 8, 2]  # longest first, each to the lighter rank: 9+1 and 8+2
    assert [sum(skewed[i] for i in s) for s in balanced_shards(skewed, 2)] == [10, 10]
    assert balanced_shards([3], 2) == [[0], []]  # more ranks than sequences: a rank gets none


def test_sharded_batches_have_equal_micro_batch_counts_and_batch_wide_counts():
    groups = synthetic_groups(0, seed=1, num_groups=3, group_size=4)  # 12 sequences
    config = update_config(micro_batch_size=5)
    whole = prepare_batch(groups, config, CPU)
    ranks = [prepare_batch(groups, config, CPU, rank=rank, world_size=2) for rank in range(2)]
    assert len(ranks[0].micro_batches) == len(ranks[1].micro_batches) == 2  # 6 sequences each
    for part in ranks:
        assert part.normalizer.total_tokens == whole.normalizer.total_tokens
        assert part.normalizer.total_sequences == whole.normalizer.total_sequences == 12
        assert part.normalizer.world_size == 1  # FSDP sums the ranks' gradients
        # the layout's cost (tokens/*) is each rank's own micro-batches; everything else is batch-wide
        batch_wide = {k: v for k, v in whole.metrics.items() if not k.startswith("tokens/")}
        assert {k: v for k, v in part.metrics.items() if not k.startswith("tokens/")} == batch_wide
        assert part.input_tokens == whole.input_tokens
    rows = sum(len(mb.advantages) for part in ranks for mb in part.micro_batches)
    assert rows == 12
    # 7 sequences, 3 per micro-batch: ranks get 4 and 3 -> 2 and 1 micro-batches, plus one filler
    small = synthetic_groups(0, seed=1, num_groups=1, group_size=7)
    config = update_config(micro_batch_size=3)
    parts = [prepare_batch(small, config, CPU, rank=r, world_size=2) for r in range(2)]
    assert [len(p.micro_batches) for p in parts] == [2, 2]
    fillers = [mb for p in parts for mb in p.micro_batches if mb.loss_mask.sum() == 0]
    assert len(fillers) == 1  # one pad prompt + one pad token
    assert fillers[0].prompt_ids.shape == fillers[0].completion_ids.shape == (1, 1)


def make_trainer(loss_type: str) -> Trainer:
    """With a KL term to another model, so the loss value itself is far from 0 (with mu = 1 the
    policy term's value is -mean(A) = 0; only its gradient is not)."""
    model = tiny_qwen2(seed=0)
    reference = tiny_qwen2(seed=1).requires_grad_(False)
    optimizer = build_optimizer(model, OptimConfig(lr=1e-3))
    scheduler = build_scheduler(optimizer, OptimConfig(lr=1e-3), total_optimizer_steps=4)
    config = update_config(3, loss=loss_settings(beta=1.0, loss_type=loss_type))
    return Trainer(model, optimizer, scheduler, config, reference)


def with_episode_masks(groups: list[ScoredGroup]) -> list[ScoredGroup]:
    """The groups as multi-turn episodes: every third completion token (from the second) is the
    environment's."""
    return [
        replace(
            g,
            completions=tuple(
                replace(c, loss_mask=tuple(i % 3 != 1 for i in range(len(c.token_ids))))
                for c in g.completions
            ),
        )
        for g in groups
    ]


@pytest.mark.parametrize("loss_type", sorted(set(LOSSES) - {"bnpo"}))
@pytest.mark.parametrize("episodes", [False, True])
def test_rank_loss_shares_and_gradients_add_up_to_the_one_process_ones(loss_type: str, episodes: bool):
    """What FSDP's summed reduce-scatter relies on (with episodes: the ranks' token counts are model
    tokens too). (bnpo is a mean over micro-batches, and ranks cut different micro-batches than one
    process does, so it is not exactly the one-process loss.)"""
    groups = synthetic_groups(2, seed=4, num_groups=3, group_size=3)  # 9 sequences over 2 ranks
    groups = with_episode_masks(groups) if episodes else groups
    trainer = make_trainer(loss_type)
    ref = trainer._frozen_logprobs
    whole_batch = prepare_batch(groups, trainer.config, CPU)
    whole = trainer.accumulate_gradients(whole_batch, ref=ref(trainer.reference, whole_batch))
    assert abs(whole["loss"]) > 1e-3
    one = {n: p.grad.clone() for n, p in trainer.model.named_parameters()}
    trainer.optimizer.zero_grad(set_to_none=True)
    shares = []
    for rank in (0, 1):
        batch = prepare_batch(groups, trainer.config, CPU, rank=rank, world_size=2)
        shares.append(trainer.accumulate_gradients(batch, ref=ref(trainer.reference, batch)))
    assert shares[0]["loss"] + shares[1]["loss"] == pytest.approx(whole["loss"], rel=1e-4, abs=1e-6)
    for name, param in trainer.model.named_parameters():  # gradients accumulated over both ranks
        torch.testing.assert_close(param.grad, one[name], rtol=1e-4, atol=1e-7)


def test_groups_and_the_learners_version_survive_the_bytes_between_ranks_exactly():
    groups = [
        ScoredGroup(
            "p-1",
            (1, 2, 3),
            (
                ScoredCompletion(
                    (4, 5),
                    (-0.1, -(0.1 + 0.2)),
                    1 / 3,
                    {"even": 0.5},
                    truncated=True,
                    loss_mask=(True, False),
                    token_versions=((6, 1), (7, 1)),
                ),
                ScoredCompletion((6,), (-1e-12,), -2.5, {"even": 0.0}, correct=True),
            ),
            policy_version=6,
        )
    ]
    data = encode_update(groups, 8)
    assert isinstance(data, bytes) and decode_update(data) == (groups, 8)
    assert decode_update(encode_update([], 0)) == ([], 0)


def write_state(path: Path, world_size: int) -> Path:
    path.mkdir(parents=True)
    state = TrainerState(step=2, policy_version=2, world_size=world_size)
    (path / "trainer_state.json").write_text(json.dumps(state.__dict__))
    return path


def test_world_size_check_names_both_sizes(tmp_path: Path):
    two = write_state(tmp_path / "two", 2)
    assert check_world_size(two, 2).step == 2
    with pytest.raises(CheckpointMismatch, match=r"written by 2 learner process\(es\) but this run has 4"):
        check_world_size(two, 4)
    old = tmp_path / "old"  # a checkpoint from before the world size was recorded: one process
    old.mkdir()
    (old / "trainer_state.json").write_text(json.dumps({"step": 1, "policy_version": 1}))
    with pytest.raises(CheckpointMismatch, match=r"written by 1 .* this run has 2"):
        check_world_size(old, 2)


def test_nproc_relaunches_the_same_command_under_torchrun():
    argv = [
        "--log-level",
        "DEBUG",
        "train",
        "--nproc",
        "4",
        "--config",
        "run.toml",
        "--nproc=4",
        "--seed",
        "1",
    ]
    assert without_nproc(argv) == ["--log-level", "DEBUG", "train", "--config", "run.toml", "--seed", "1"]
    command = torchrun_command(argv, 4)
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert command[command.index("--nproc-per-node") + 1] == "4"
    assert command[-9:] == ["-m", "grpo_learner", *without_nproc(argv)]
