"""Sequence packing: a micro-batch's groups laid end to end in rows, no padding between completions.

Completions are uneven (most stop early, a few run to the limit), and the padded layout computes every
completion at the longest one's width: `N x T_max` tokens through every layer. Packed, each group is one
segment `[prompt | c_1 | c_2 | ... | c_G]` holding only real tokens, and segments fill rows of at most
`train.packing_row_tokens` tokens (first fit, longest first; then dealt evenly over as many rows, since
every row is padded to the widest). The group's prompt is still computed once,
as in the shared-prompt layout (`batching.py`), unless the group outgrows a row: then it is split into
segments that each repeat the prompt, so no row is longer than the budget or one sequence.

What each token sees is what it would see in one pass over its own `[prompt | completion]`: a 4D mask
(True = attend) lets query a attend key b iff

    b <= a  and  group(a) = group(b)  and  (b is in the prompt  or  segment(a) = segment(b)),

and positions restart per sequence (`0 .. Lp-1` on the prompt, `Lp .. Lp+T_i-1` on completion i), so
the logprobs and gradients equal the padded computation to float rounding. Completion token j of
sequence i is predicted by the hidden state before it: the prompt's last token for j = 0, token j - 1 of
the same completion after that (`predictor`).

Why rows of a bounded length rather than one row per micro-batch: without a varlen kernel (CPU, SDPA)
attention is computed densely over the row, `L^2` scores per head and layer, so the row length bounds
that cost and the mask's `L^2` bytes. Padding left is at the end of rows only.

Built once per micro-batch and step: `prepare_batch` lays each micro-batch out on the CPU before it
moves to its device (`with_packed_rows`), and every forward of the step (pi_old, the reference, each
of the mu iterations) and the token counts read that one layout (`packed_rows`). Rebuilt per forward,
the `R x L x L` mask would be built and copied again each time, and the row shape read back from the
device (a synchronising device->host copy on a GPU).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from grpo_learner.grpo.batching import MicroBatch


@dataclass(frozen=True)
class PackedRows:
    input_ids: Tensor  # [R, L] the packed tokens; padding at the end of a row
    position_ids: Tensor  # [R, L] restarting per sequence (see the module doc)
    attention_mask: Tensor  # [R, 1, L, L] bool, True = query may attend key
    predictor: Tensor  # [N, T] flat index (row * L + position) of the state that predicts token j of row i
    real_tokens: int  # tokens that are not row padding
    row_tokens: int  # the train.packing_row_tokens budget the rows were built for

    @property
    def padded_tokens(self) -> int:
        return self.input_ids.numel()

    def to(self, device: torch.device | str) -> PackedRows:
        return PackedRows(
            input_ids=self.input_ids.to(device),
            position_ids=self.position_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            predictor=self.predictor.to(device),
            real_tokens=self.real_tokens,
            row_tokens=self.row_tokens,
        )


@dataclass(frozen=True)
class _Segment:
    """One group: its prompt and the completion rows (of the micro-batch) that share it."""

    prompt: Tensor  # [Lp] real prompt tokens
    completions: list[int]  # completion row indices
    lengths: list[int]  # real tokens of each completion

    @property
    def tokens(self) -> int:
        return self.prompt.numel() + sum(self.lengths)


def _segments(batch: MicroBatch, row_tokens: int) -> list[_Segment]:
    """One segment per group, split where the group outgrows a row: each part repeats the prompt and
    holds at least one completion, so no row is longer than max(row_tokens, prompt + one completion)."""
    lengths = batch.completion_mask.sum(-1).tolist()
    segments = []
    for p in range(batch.prompt_ids.shape[0]):
        prompt = batch.prompt_ids[p][batch.prompt_mask[p].bool()]
        part: list[int] = []
        for i in (batch.prompt_index == p).nonzero().flatten().tolist():
            if part and prompt.numel() + sum(lengths[j] for j in part) + lengths[i] > row_tokens:
                segments.append(_Segment(prompt, part, [lengths[j] for j in part]))
                part = []
            part.append(i)
        segments.append(_Segment(prompt, part, [lengths[j] for j in part]))
    return segments


def _first_fit(segments: list[_Segment], row_tokens: int) -> list[list[_Segment]]:
    """First fit, longest first: few rows, each within `row_tokens` unless one segment alone exceeds it."""
    rows: list[list[_Segment]] = []
    room: list[int] = []
    for segment in sorted(segments, key=lambda s: -s.tokens):
        fit = next((r for r, free in enumerate(room) if segment.tokens <= free), None)
        if fit is None:
            rows.append([segment])
            room.append(max(row_tokens, segment.tokens) - segment.tokens)
        else:
            rows[fit].append(segment)
            room[fit] -= segment.tokens
    return rows


def _balanced(segments: list[_Segment], count: int) -> list[list[_Segment]]:
    """`count` rows, each segment (longest first) to the row with the fewest tokens so far."""
    rows: list[list[_Segment]] = [[] for _ in range(count)]
    sizes = [0] * count
    for segment in sorted(segments, key=lambda s: -s.tokens):
        emptiest = sizes.index(min(sizes))
        rows[emptiest].append(segment)
        sizes[emptiest] += segment.tokens
    return rows


def _width(rows: list[list[_Segment]]) -> int:
    return max(sum(s.tokens for s in row) for row in rows)


def _rows(segments: list[_Segment], row_tokens: int) -> list[list[_Segment]]:
    """As few rows as first fit needs, their segments dealt out evenly where that narrows the rows.

    Every row is padded to the widest, so first fit's full rows beside a short last one compute
    `R * width - real` positions of padding for nothing (a full row and one a fifth as long: 40%).
    Dealt longest first to the emptiest of the same R rows, the width drops to about real / R (plus
    at most one segment); kept only where it is narrower and still within the budget (or one segment).
    """
    fitted = _first_fit(segments, row_tokens)
    if len(fitted) == 1:
        return fitted
    balanced = _balanced(segments, len(fitted))
    limit = max(row_tokens, max(s.tokens for s in segments))
    return balanced if _width(balanced) < min(_width(fitted), limit + 1) else fitted


def pack(batch: MicroBatch, row_tokens: int, pad_token_id: int = 0) -> PackedRows:
    """The packed layout of `batch` (see the module doc), built on the CPU (a GPU would sync on every
    small copy); `batch` itself is left as it is."""
    batch = batch.to("cpu")
    rows = _rows(_segments(batch, row_tokens), row_tokens)
    width = _width(rows)
    n, t = batch.completion_ids.shape
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    group = torch.full((len(rows), width), -1, dtype=torch.long)  # -1: row padding
    sequence = torch.full((len(rows), width), -1, dtype=torch.long)  # -1: a prompt token
    predictor = torch.zeros((n, t), dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for g, segment in enumerate(row):
            lp = segment.prompt.numel()
            input_ids[r, at : at + lp] = segment.prompt
            position_ids[r, at : at + lp] = torch.arange(lp)
            group[r, at : at + lp] = g
            last_prompt = r * width + at + lp - 1
            at += lp
            for i, k in zip(segment.completions, segment.lengths, strict=True):
                input_ids[r, at : at + k] = batch.completion_ids[i, :k]
                position_ids[r, at : at + k] = torch.arange(lp, lp + k)
                group[r, at : at + k] = g
                sequence[r, at : at + k] = i
                if k:  # an empty completion (a sequence aborted before its first token) predicts nothing
                    predictor[i, 0] = last_prompt
                    predictor[i, 1:k] = r * width + at + torch.arange(k - 1)
                at += k
    return PackedRows(
        input_ids=input_ids,
        position_ids=position_ids,
        attention_mask=_tree_causal_mask(group, sequence),
        predictor=predictor,
        real_tokens=int((group >= 0).sum()),
        row_tokens=row_tokens,
    )


def with_packed_rows(batch: MicroBatch, row_tokens: int) -> MicroBatch:
    """`batch` carrying its packed layout; called on the CPU before the batch moves to its device, so
    the layout moves with it once (`MicroBatch.to`)."""
    return replace(batch, packed=pack(batch, row_tokens))


def packed_rows(batch: MicroBatch, row_tokens: int) -> PackedRows:
    """The layout `batch` carries when it was built for `row_tokens` (`with_packed_rows`); else built
    now (a batch straight from `collate`), on the CPU, and moved to the batch's device."""
    if batch.packed is not None and batch.packed.row_tokens == row_tokens:
        return batch.packed
    return pack(batch, row_tokens).to(batch.completion_ids.device)


def _tree_causal_mask(group: Tensor, sequence: Tensor) -> Tensor:
    """[R, 1, L, L]: causal, within a group, to the prompt or to one's own completion. Row padding
    attends to itself only, so no query row is fully masked (a softmax over nothing is NaN)."""
    width = group.shape[1]
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    same_group = (group.unsqueeze(2) == group.unsqueeze(1)) & (group >= 0).unsqueeze(2)
    key_is_prompt = (sequence == -1).unsqueeze(1)
    same_sequence = sequence.unsqueeze(2) == sequence.unsqueeze(1)
    allowed = causal & same_group & (key_is_prompt | same_sequence)
    padding_self = torch.eye(width, dtype=torch.bool) & (group < 0).unsqueeze(2)
    return (allowed | padding_self).unsqueeze(1)


def packed_completion_hidden(decoder: torch.nn.Module, batch: MicroBatch, row_tokens: int) -> Tensor:
    """`[N, T, H]`: at [i, j] the hidden state that predicts completion token j of row i (as
    `logprobs._completion_hidden`), computed over the packed rows."""
    attention = getattr(decoder.config, "_attn_implementation", "sdpa")
    if attention not in ("sdpa", "eager"):
        raise ValueError(
            f"train.packing needs sdpa or eager attention (a 4D mask); this model uses {attention!r}: "
            "set train.packing = false"
        )
    packed = packed_rows(batch, row_tokens)
    mask = packed.attention_mask
    if attention == "eager":
        # eager attention adds the mask to the scores: 0 where allowed, the most negative value elsewhere
        mask = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device).masked_fill_(
            ~mask, torch.finfo(torch.float32).min
        )
    hidden = decoder(
        input_ids=packed.input_ids, attention_mask=mask, position_ids=packed.position_ids
    ).last_hidden_state
    return hidden.reshape(-1, hidden.shape[-1])[packed.predictor]
