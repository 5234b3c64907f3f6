"""(v1.2) WeightChunk.lora_adapter: on every chunk of an adapter stream; receivers without support refuse."""

from __future__ import annotations

import pytest
import torch
from grpo.v1 import rollout_pb2
from grpo_common.weights.codec import WeightStreamDecoder, WeightStreamError, encode_state_dict_wire

SPEC = rollout_pb2.LoraAdapterSpec(rank=4, alpha=8.0, target_modules=["q_proj"])
ADAPTER = {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.ones(4, 8)}


def test_adapter_spec_travels_on_every_chunk_and_is_decoded():
    chunks = list(encode_state_dict_wire(ADAPTER, 3, bucket_bytes=32, lora_adapter=SPEC))
    assert len(chunks) > 1
    assert all(rollout_pb2.WeightChunk.FromString(c).lora_adapter == SPEC for c in chunks)
    decoder = WeightStreamDecoder(adapter_expected=lambda spec: {})
    for chunk in chunks:
        decoder.feed(chunk)
    decoded = decoder.finish()
    assert decoded.lora_adapter == SPEC and torch.equal(
        next(iter(decoded.tensors.values())), torch.ones(4, 8)
    )


def test_a_receiver_without_adapter_support_refuses_at_the_first_chunk():
    decoder = WeightStreamDecoder()
    first = next(encode_state_dict_wire(ADAPTER, 3, lora_adapter=SPEC))
    with pytest.raises(WeightStreamError, match="send merged weights"):
        decoder.feed(first)
