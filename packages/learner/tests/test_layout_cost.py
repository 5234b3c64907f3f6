"""train.packing = "auto": a step packs only where that computes less than the padded layout."""

from __future__ import annotations

import torch
from grpo_learner.config import OptimConfig
from grpo_learner.grpo.batching import TrainSequence
from grpo_learner.grpo.layout_cost import DecoderCost, packed_cost, packing_pays, padded_cost
from grpo_learner.grpo.optim import build_optimizer, build_scheduler
from grpo_learner.grpo.update import Trainer
from learner_fixtures import default_config, group, tiny_qwen2

torch.set_num_threads(1)

QWEN_05B_LIKE = DecoderCost.of(
    type(
        "Config",
        (),
        dict(hidden_size=896, num_attention_heads=14, num_key_value_heads=2, intermediate_size=4864),
    )
)
TINY = DecoderCost.of(tiny_qwen2().config)


def sequences(prompt: int, lengths: list[int], groups: int) -> list[TrainSequence]:
    return [
        TrainSequence(tuple(range(g, g + prompt)), (7,) * n, (-1.0,) * n, 1.0)
        for g in range(groups)
        for n in lengths
    ]


def test_the_cost_counts_the_projections_of_a_token_and_the_attention_of_a_pair():
    # hidden 896, q = 14 x 64 = 896, kv = 2 x 64 = 128, MLP 4864
    assert QWEN_05B_LIKE.per_token == 2 * (896 * 896 + 2 * 896 * 128 + 896 * 896 + 3 * 896 * 4864)
    assert QWEN_05B_LIKE.per_pair == 4 * 896
    # 6 short even completions of 4 groups: padded, shared = 4 prompts of 5 + 24 rows of 10 tokens
    mb = sequences(5, [10] * 6, groups=4)
    assert padded_cost(mb, True, TINY) == TINY.cost(4 * 5 + 24 * 10, 4 * 25 + 24 * 10 * 15)
    assert padded_cost(mb, False, TINY) == TINY.cost(24 * 15, 24 * 15**2)
    # packed: 4 segments of 65 tokens = 260, one row of 260 within a 1024 budget
    assert packed_cost(mb, 1024, TINY) == TINY.cost(260, 260**2)
    assert packed_cost(mb, 130, TINY) == TINY.cost(2 * 130, 2 * 130**2)  # two rows of two segments


def test_short_even_completions_run_padded_and_uneven_ones_packed():
    even = [sequences(6, [12] * 8, groups=32)]  # the embedded default's step: 12 new tokens
    assert not packing_pays(even, 1024, True, TINY)
    uneven = [sequences(6, [256] + [5] * 7, groups=8)]  # one completion runs to the limit
    assert packing_pays(uneven, 1024, True, TINY)
    assert not packing_pays(even, 1024, True, QWEN_05B_LIKE)  # nothing to remove: equal lengths
    # somewhat uneven: the tiny model's dense attention over a row costs more than the padding it saves,
    # while a 0.5B-wide model spends far more per token than per attended pair, so it packs
    somewhat = [sequences(6, [64] + [16] * 7, groups=16)]
    assert not packing_pays(somewhat, 1024, True, TINY)
    assert packing_pays(somewhat, 1024, True, QWEN_05B_LIKE)


def _trainer(packing) -> Trainer:
    config = default_config(train={"micro_batch_size": 64, "packing": packing})
    model = tiny_qwen2(seed=0)
    optimizer = build_optimizer(model, OptimConfig(lr=1e-2, max_grad_norm=None))
    return Trainer(model, optimizer, build_scheduler(optimizer, OptimConfig(lr=1e-2), 10), config)


def test_auto_trains_a_step_of_even_completions_padded_and_an_uneven_one_packed():
    even = [
        group(
            (3, 4, 5, 6),
            [(8 + g,) * 12 for g in range(8)],
            [float(g % 2) for g in range(8)],
            prompt_id=f"e{p}",
        )
        for p in range(8)
    ]
    auto, padded = _trainer("auto"), _trainer(False)
    metrics = auto.update(even)
    assert metrics["tokens/packed"] == 0.0
    padded.update(even)
    for a, b in zip(auto.model.parameters(), padded.model.parameters(), strict=True):
        assert torch.equal(a, b)  # the very computation packing off runs
    uneven = [group((3, 4, 5, 6), [(9,) * 60] + [(10,) * 2] * 7, [1.0] + [0.0] * 7)]
    assert _trainer("auto").update(uneven)["tokens/packed"] == 1.0
    assert _trainer(True).update([*even])["tokens/packed"] == 1.0  # true: always packed
