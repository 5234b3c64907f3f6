"""Every payload the sglang backend sends, checked against SGLang's own request classes.

Runs only where SGLang's request classes import (see the rollout README, "SGLang's real request schema"):
CI does not install them, so there these tests are skipped, never counted. With them on the path, the
stand-in also checks every payload of every other sglang test (sglang_real_schema.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import typing
from pathlib import Path

import httpx
import pytest
from grpo_rollout.backends.contract import SamplingParams
from grpo_rollout.backends.sglang.http import PauseMode, SGLangError, SGLangServer
from grpo_rollout.backends.sglang.lora import LoadedAdapter, with_adapter
from grpo_rollout.backends.sglang.payloads import group_request
from rollout_sglang_standin import StandinServer
from sglang_real_schema import ENDPOINT_CLASSES, schema_problems, sglang_modules

pytestmark = pytest.mark.skipif(
    sglang_modules() is None, reason="SGLang's request classes are not importable (optional, see README)"
)


async def call_every_endpoint(server: StandinServer, tmp_path: Path) -> None:
    """Each SGLangServer method once, with the payloads the backend builds."""
    sampling = SamplingParams(
        max_new_tokens=4, temperature=0.7, top_p=0.9, top_k=5, stop_token_ids=(2,), seed=3
    )
    request = group_request([1, 5, 6], prompt_index=0, n=2, sampling=sampling)
    adapter = LoadedAdapter(name="grpo-lora-v1", path=tmp_path / "adapter", version=1)
    async with httpx.AsyncClient() as client:
        sglang = SGLangServer(server.url, client)
        await sglang.generate(request)
        await sglang.generate(group_request([1, 5], 1, 2, SamplingParams(max_new_tokens=2)))
        for mode in typing.get_args(PauseMode):
            await sglang.pause_generation(mode)
            await sglang.continue_generation()
        # The stand-in's own answer to these does not matter here (an adapter directory that does not
        # exist is refused): what SGLang's classes make of the payload is in state.schema_problems.
        with contextlib.suppress(SGLangError):
            await sglang.update_weights_from_disk(str(tmp_path), weight_version="1")
        with contextlib.suppress(SGLangError):
            await sglang.init_weights_update_group("127.0.0.1", 29500, rank_offset=1, world_size=2)
        for version in ("2", None):
            server.state.broadcast_done.set()
            with contextlib.suppress(SGLangError):
                await sglang.update_weights_from_distributed(
                    ["model.norm.weight"], ["bfloat16"], [[8]], weight_version=version
                )
        with contextlib.suppress(SGLangError):
            await sglang.destroy_weights_update_group()
        server.state.lora.enabled = True
        with contextlib.suppress(SGLangError):
            await sglang.load_lora_adapter(adapter.name, str(adapter.path))
        with contextlib.suppress(SGLangError):
            await sglang.generate(with_adapter(request, 2, adapter))
        with contextlib.suppress(SGLangError):
            await sglang.unload_lora_adapter(adapter.name)


def test_every_payload_the_backend_sends_is_what_sglang_reads(tmp_path: Path) -> None:
    with StandinServer() as server:
        asyncio.run(call_every_endpoint(server, tmp_path))
    assert server.state.schema_problems == []
    assert set(ENDPOINT_CLASSES) <= set(server.state.paths())


def test_a_misspelt_or_wrong_payload_is_a_problem_not_silently_ignored() -> None:
    request = group_request([1, 5, 6], 0, 2, SamplingParams(max_new_tokens=4))
    request["sampling_params"][1]["seed"] = 7  # SGLang's key is sampling_seed
    request["return_logprobs"] = True  # SGLang's key is return_logprob
    problems = schema_problems("/generate", request)
    assert any("'seed'" in p for p in problems) and any("'return_logprobs'" in p for p in problems)
    assert schema_problems("/pause_generation", {"mode": "later"})
    top_p_zero = group_request([1], 0, 1, SamplingParams(max_new_tokens=4, top_p=0.0))
    assert any("top_p" in p for p in schema_problems("/generate", top_p_zero))
