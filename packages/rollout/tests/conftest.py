"""Shared fixtures: a tiny Qwen2 model and a char-level tokenizer built in code (never downloaded)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from transformers import PreTrainedTokenizerFast

# Test helper modules (rollout_*.py) live next to this file; pytest runs in importlib mode.
sys.path.insert(0, str(Path(__file__).parent))

from grpo_common.bpe_tokenizer import build_bpe_tokenizer
from rollout_reward_standin import RewardStandin
from rollout_testkit import build_model_dir, build_tokenizer

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("tiny-llama"), family="llama", seed=1)


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    return build_tokenizer()


@pytest.fixture(scope="session")
def bpe_tokenizer() -> PreTrainedTokenizerFast:
    """The 151,936-entry byte-level BPE tokenizer with Qwen2.5's chat template (trained once per session)."""
    return build_bpe_tokenizer()


@pytest.fixture
def reward() -> Iterator[RewardStandin]:
    """A reward service stand-in on a loopback port, for tests that run a rollout service."""
    standin = RewardStandin().start()
    yield standin
    standin.stop()
