"""Multi-turn episodes in the learner: environment tokens are context only (loss weight 0, no logprob).

Built from the groups the learner receives (rollout.proto v1.2 `Completion.loss_mask`): for every
registered loss and every sampler-correction level, what an environment token's logprobs hold
cannot change the loss or any gradient; the entropy and KL metrics average the model's tokens only;
and a malformed mask drops its group with a clear error instead of reaching a loss.
"""

from __future__ import annotations

import pytest
import torch
from grpo.v1 import rollout_pb2
from grpo_learner.config import OptimConfig
from grpo_learner.data.rollout_data import GroupError, ScoredCompletion, ScoredGroup, group_from_proto
from grpo_learner.data.sources import GroupFilter
from grpo_learner.grpo.logprobs import completion_logprobs
from grpo_learner.grpo.losses import LOSSES, Normalizer, PolicyBatch, sampler_weights
from grpo_learner.grpo.optim import build_optimizer, build_scheduler
from grpo_learner.grpo.update import Trainer, prepare_batch
from learner_fixtures import loss_settings, tiny_qwen2, update_config

torch.set_num_threads(1)

N, T = 6, 9
# Environment tokens (mask 0) in the middle and at the end of episodes; row 5 is single-turn.
ENV = {0: [3, 4, 5], 1: [1, 2, 7, 8], 2: [4], 3: [2, 3, 4, 5, 6], 4: [8]}


def episode_mask() -> torch.Tensor:
    mask = torch.ones(N, T, dtype=torch.float64)
    mask[2, 6:] = 0.0  # padding after a shorter completion
    for row, cols in ENV.items():
        mask[row, cols] = 0.0
    return mask


def loss_inputs(seed: int):
    gen = torch.Generator().manual_seed(seed)
    logp = -torch.rand(N, T, generator=gen, dtype=torch.float64) * 3
    old = logp + torch.randn(N, T, generator=gen, dtype=torch.float64) * 0.3
    ref = logp + torch.randn(N, T, generator=gen, dtype=torch.float64) * 0.3
    sampler = old + torch.randn(N, T, generator=gen, dtype=torch.float64) * 0.2
    adv = torch.randn(N, generator=gen, dtype=torch.float64)
    return logp, old, ref, sampler, adv


def garbage_off_mask(tensor: torch.Tensor, mask: torch.Tensor, value: float) -> torch.Tensor:
    """`tensor` where the mask is 1; elsewhere `value`."""
    return torch.where(mask > 0, tensor, torch.full_like(tensor, value))


def batch_loss(loss_type, logp, old, ref, sampler, adv, mask, level: str | None):
    settings = loss_settings(0.2, 4.0 if loss_type == "cispo" else 0.28, 1.5, 0.04)
    norm = Normalizer(
        total_sequences=N, total_tokens=int(mask.sum()), num_micro_batches=3, max_completion_length=T
    )
    total = 0.0
    for rows in ([0, 1], [2, 3], [4, 5]):
        weights = None
        if level is not None:
            weights = sampler_weights(old[rows], sampler[rows], mask[rows], "truncate", level, 2.0)
        batch = PolicyBatch(logp[rows], old[rows], adv[rows], mask[rows], ref[rows], weights)
        total = total + LOSSES[loss_type](batch, norm, settings).loss
    return total


@pytest.mark.parametrize("loss_type", sorted(LOSSES))
@pytest.mark.parametrize("level", [None, "token", "sequence", "geometric"])
def test_environment_token_values_cannot_change_any_loss_or_gradient(loss_type, level):
    """Same tokens in context; the env tokens' logprobs, old, ref and sampler logprobs rewritten to
    garbage (+-800: exp overflows to inf, and inf * 0 is NaN; NaN itself): value and every
    gradient are bit-identical."""
    mask = episode_mask()
    logp, old, ref, sampler, adv = loss_inputs(7)
    clean_logp = logp.clone().requires_grad_(True)
    clean = batch_loss(loss_type, clean_logp, old, ref, sampler, adv, mask, level)
    (clean_grad,) = torch.autograd.grad(clean, clean_logp)

    dirty_logp = garbage_off_mask(logp, mask, -37.0).requires_grad_(True)
    dirty = batch_loss(
        loss_type,
        dirty_logp,
        garbage_off_mask(old, mask, -800.0),
        garbage_off_mask(ref, mask, 800.0),
        garbage_off_mask(sampler, mask, float("nan")),
        adv,
        mask,
        level,
    )
    (dirty_grad,) = torch.autograd.grad(dirty, dirty_logp)
    assert torch.isfinite(clean) and dirty.item() == clean.item()
    assert torch.equal(dirty_grad, clean_grad)
    assert torch.count_nonzero(clean_grad[mask == 0]) == 0
    assert torch.count_nonzero(clean_grad[mask > 0]) > 0


def test_sequence_sampler_weight_multiplies_only_model_token_ratios():
    old = torch.log(torch.tensor([[0.5, 0.5, 0.5]]))
    sampler = torch.log(torch.tensor([[0.25, 1.0, 0.25]]))  # the middle token is an env token
    mask = torch.tensor([[1.0, 0.0, 1.0]])
    weights = sampler_weights(old, sampler, mask, "truncate", "sequence", cap=10.0)
    assert weights[0].tolist() == pytest.approx([4.0, 0.0, 4.0])  # 2 * 2, the env token's 0.5 unused
    geometric = sampler_weights(old, sampler, mask, "truncate", "geometric", cap=10.0)
    assert geometric[0].tolist() == pytest.approx([2.0, 0.0, 2.0])  # mean over the 2 model tokens


# --- through the trainer on a real (tiny) model ------------------------------------------------

PROMPT = (1, 2, 3)
# (tokens, loss_mask): model turn, tool result (env), model turn; the last one is single-turn.
EPISODES = [
    ((5, 6, 7, 8, 9, 10), (True, True, False, False, True, True)),
    ((11, 12, 13, 14), (True, False, False, True)),
    ((20, 21, 22, 23, 24), (True, True, True, False, True)),
    ((30, 31, 32), ()),
]
REWARDS = [1.0, 0.0, 1.0, 0.0]


def episode_group(env_logprob: float = 0.0, env_tokens: dict[int, int] | None = None) -> ScoredGroup:
    """The episodes with sampler logprobs -0.7 - 0.1 i on model tokens and `env_logprob` on env ones;
    `env_tokens` replaces environment token ids ({old id: new id})."""
    completions = []
    for (tokens, mask), reward in zip(EPISODES, REWARDS, strict=True):
        flags = mask or (True,) * len(tokens)
        ids = tuple(t if m else (env_tokens or {}).get(t, t) for t, m in zip(tokens, flags, strict=True))
        logprobs = tuple(-0.7 - 0.1 * i if m else env_logprob for i, m in enumerate(flags))
        completions.append(ScoredCompletion(ids, logprobs, reward, loss_mask=mask))
    return ScoredGroup("episode", PROMPT, tuple(completions), policy_version=0)


def trainer(**sections) -> Trainer:
    config = update_config(2, **sections)
    model = tiny_qwen2(seed=0)
    optimizer = build_optimizer(model, OptimConfig(lr=1e-3, max_grad_norm=None))
    scheduler = build_scheduler(optimizer, OptimConfig(lr=1e-3), total_optimizer_steps=10)
    reference = tiny_qwen2(seed=1) if config.loss.beta > 0 else None
    return Trainer(model, optimizer, scheduler, config, reference)


def gradients(t: Trainer, group: ScoredGroup) -> tuple[dict[str, float], list[torch.Tensor]]:
    batch = prepare_batch([group], t.config, torch.device("cpu"))
    ref = t._frozen_logprobs(t.reference, batch) if t.reference is not None else None
    t.optimizer.zero_grad(set_to_none=True)
    stats = t.accumulate_gradients(batch, ref=ref)
    grads = [p.grad.clone() for p in t.model.parameters() if p.grad is not None]
    return stats, grads


@pytest.mark.parametrize("level", ["token", "sequence"])
def test_trainer_gradient_ignores_environment_logprobs_but_reads_their_tokens(level):
    correction = {"mode": "truncate", "level": level, "cap": 2.0}
    t = trainer(loss={"beta": 0.04, "sampler_correction": correction})
    stats, grads = gradients(t, episode_group(env_logprob=0.0))
    garbage_stats, garbage_grads = gradients(t, episode_group(env_logprob=-55.0))
    assert stats == garbage_stats
    assert all(torch.equal(a, b) for a, b in zip(grads, garbage_grads, strict=True))
    # The env tokens are context: other tokens in their place change what the model tokens see.
    _, other_grads = gradients(t, episode_group(env_tokens={7: 40, 8: 41, 12: 42, 13: 43, 23: 44}))
    assert any(not torch.equal(a, b) for a, b in zip(grads, other_grads, strict=True))


def test_entropy_and_kl_metrics_average_model_tokens_only():
    t = trainer(loss=loss_settings(beta=0.04))
    group = episode_group()
    stats, _ = gradients(t, group)
    batch = prepare_batch([group], t.config, torch.device("cpu"))
    entropy_sum, kl_sum, model_tokens = 0.0, 0.0, 0
    with torch.no_grad():
        for mb in batch.micro_batches:
            every_token = type(mb)(**{**vars(mb), "model_mask": mb.completion_mask})  # env tokens too
            sections = (t.config.train, t.config.rollout.sampling)
            logp, entropy = completion_logprobs(t.model, every_token, *sections)
            ref, _ = completion_logprobs(t.reference, every_token, *sections, with_entropy=False)
            env = mb.completion_mask & ~mb.model_mask
            assert env.any() and torch.count_nonzero(entropy[env]) == int(env.sum())  # they'd count
            kl = torch.exp(ref - logp) - (ref - logp) - 1
            entropy_sum += float(entropy[mb.model_mask].sum())
            kl_sum += float(kl[mb.model_mask].sum())
            model_tokens += int(mb.model_mask.sum())
    assert model_tokens == 4 + 2 + 4 + 3 == batch.normalizer.total_tokens
    assert stats["entropy"] == pytest.approx(entropy_sum / model_tokens, rel=1e-5)
    assert stats["kl"] == pytest.approx(kl_sum / model_tokens, rel=1e-5)


def test_completion_lengths_report_model_tokens():
    batch = prepare_batch([episode_group()], update_config(), torch.device("cpu"))
    assert batch.metrics["completions/mean_length"] == (4 + 2 + 4 + 3) / 4
    assert batch.metrics["completions/max_length"] == 4.0
    assert batch.input_tokens == 4 * 3 + 6 + 4 + 5 + 3  # env tokens are processed as context


def test_single_turn_group_without_mask_trains_as_a_mask_of_ones():
    plain = episode_group()
    ones = ScoredGroup(
        plain.prompt_id,
        plain.prompt_token_ids,
        tuple(
            ScoredCompletion(c.token_ids, c.sampler_logprobs, c.reward, loss_mask=(True,) * len(c.token_ids))
            for c in plain.completions
        ),
        policy_version=0,
    )
    bare = ScoredGroup(
        plain.prompt_id,
        plain.prompt_token_ids,
        tuple(ScoredCompletion(c.token_ids, c.sampler_logprobs, c.reward) for c in plain.completions),
        policy_version=0,
    )
    t = trainer()
    stats, grads = gradients(t, bare)
    ones_stats, ones_grads = gradients(t, ones)
    assert stats == ones_stats
    assert all(torch.equal(a, b) for a, b in zip(grads, ones_grads, strict=True))


# --- the edge: masks from the wire -------------------------------------------------------------


def proto_episode_group() -> rollout_pb2.RolloutGroup:
    return rollout_pb2.RolloutGroup(
        prompt_id="q1",
        prompt_token_ids=[1, 2],
        completions=[
            rollout_pb2.Completion(
                token_ids=[4, 5, 6],
                logprobs=[-0.1, 0.0, -0.2],
                loss_mask=[True, False, True],
                reward=1.0,
                episode=rollout_pb2.EpisodeStats(turns=2, tool_calls=1, model_tokens=2, environment_tokens=1),
            ),
            rollout_pb2.Completion(token_ids=[7], logprobs=[-0.3], reward=0.0),  # a v1.1 completion
        ],
    )


def test_group_from_proto_reads_the_mask_and_the_episode():
    g = group_from_proto(proto_episode_group())
    episode, single = g.completions
    assert episode.loss_mask == (True, False, True) and episode.model_tokens == 2
    assert episode.episode is not None and episode.episode.turns == 2 and episode.episode.tool_calls == 1
    assert single.loss_mask == () and single.model_mask == (True,) and single.episode is None


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: m.completions[0].loss_mask.append(True), "loss_mask has 4 entries for 3 token_ids"),
        (lambda m: m.completions[0].loss_mask.pop(), "loss_mask has 2 entries for 3 token_ids"),
        (
            lambda m: m.completions[0].loss_mask.__setitem__(slice(None), [False] * 3),
            "loss_mask marks no token as the model's",
        ),
        (lambda m: m.completions[0].logprobs.__setitem__(0, 0.7), "logprobs must be finite and <= 0"),
        (lambda m: m.completions[0].logprobs.append(-1.0), "3 token_ids but 4 logprobs"),
    ],
)
def test_bad_masks_raise_a_clear_group_error(mutate, message):
    m = proto_episode_group()
    mutate(m)
    with pytest.raises(GroupError, match=message):
        group_from_proto(m)


def test_an_environment_token_logprob_is_never_validated_as_a_sampler_logprob():
    m = proto_episode_group()
    m.completions[0].logprobs[1] = 3.0  # not a logprob at all, but an env token's value is not read
    assert group_from_proto(m).completions[0].sampler_logprobs[1] == 3.0


def test_the_filter_drops_a_group_with_a_bad_mask_as_invalid():
    good = group_from_proto(proto_episode_group())
    bad_completion = ScoredCompletion((4, 5), (-0.1, -0.2), 1.0, loss_mask=(True,))
    bad = ScoredGroup("q2", (1,), (bad_completion, good.completions[1]), policy_version=0)
    f = GroupFilter(group_size=2, max_staleness=0, reward_weights={"reward": 1.0})
    assert f.reject_reason(good, 0) is None
    assert f.reject_reason(bad, 0) == "invalid"
