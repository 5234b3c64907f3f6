"""Model shapes the benchmarks share, and the one-line machine description each prints first.

Every benchmark builds Qwen2-shaped models with random weights from these configs (nothing is
downloaded), so figures from learner_step.py, rollout.py and scaling.py describe the same models.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from typing import Any

import torch
from transformers import Qwen2Config


@dataclass(frozen=True)
class ModelShape:
    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int

    def qwen2_config(self, **overrides: Any) -> Qwen2Config:
        """A Qwen2 config of this shape with tied embeddings; `overrides` set any other field."""
        fields: dict[str, Any] = {
            "vocab_size": self.vocab,
            "hidden_size": self.hidden,
            "intermediate_size": self.intermediate,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "max_position_embeddings": 1024,
            "tie_word_embeddings": True,
        }
        return Qwen2Config(**(fields | overrides))


SHAPES = {
    "tiny": ModelShape("tiny", hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=1024),
    # Big enough that the update, not Python overhead, dominates a step on one CPU thread.
    "small": ModelShape("small", hidden=256, layers=4, heads=4, kv_heads=2, intermediate=768, vocab=1024),
    "100m": ModelShape("100m", hidden=768, layers=12, heads=12, kv_heads=2, intermediate=2048, vocab=32000),
}


def machine_description(threads: str) -> str:
    """CPU model, cores, load (other processes share the cores), versions; `threads` says how many."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()
    return (
        f"machine: {platform.machine()} {cpu}; {os.cpu_count()} logical cores; load average "
        f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; torch {torch.__version__} ({threads}); "
        f"python {platform.python_version()}"
    )
