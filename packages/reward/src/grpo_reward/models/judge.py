"""Task `judge`: an LLM grades each completion with a rubric through an OpenAI-compatible endpoint.

Each item is one POST to `…/v1/chat/completions` (what vLLM, SGLang and OpenAI serve) with the rubric
filled in (`{prompt}`, `{completion}`, `{reference}`, `{min_score}`, `{max_score}`). At most
`concurrency` requests are in flight; one request may take `timeout_s`, an item `deadline_s` in all.
A timeout, a connection error, a 429 or a 5xx is retried up to `retries` times, waiting `backoff_s`,
then twice that, ... Any other answer is final.

The score is read strictly (`parse_score`): the last match of `score_pattern` in the reply, a finite
number within [min_score, max_score]. Anything else — no match, out of range, an error reply — is
not a score: the item comes back `timed_out` (no information about the answer, so a trainer drops
it) with the reason and the judge's own text, never as a silent 0. A score s becomes the reward
(s - min_score) / (max_score - min_score) in [0, 1]; the sub-scores are `score` (the judge's number),
`latency_s` and `attempts`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from grpo_reward.models.config import JudgeConfig
from grpo_reward.tasks.batched import BatchTask
from grpo_reward.verdict import Verdict, timed_out

if TYPE_CHECKING:
    from grpo_reward.verifier import Item

logger = logging.getLogger(__name__)

QUOTED_CHARS = 300  # of the judge's text in a reason
RETRIED_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class Unparsable(ValueError):
    """The judge's reply holds no score in range; the message quotes it."""


def parse_score(text: str, pattern: str, min_score: float, max_score: float) -> float:
    """The last match of `pattern` in `text` as a number in [min_score, max_score]; Unparsable otherwise."""
    matches = list(re.finditer(pattern, text, re.MULTILINE))
    quoted = text[-QUOTED_CHARS:]
    if not matches:
        raise Unparsable(f"no score matching /{pattern}/ in the judgement: {quoted!r}")
    raw = matches[-1].group(1)
    try:
        score = float(raw)
    except (TypeError, ValueError):
        raise Unparsable(f"score {raw!r} is not a number; judgement: {quoted!r}") from None
    if not math.isfinite(score) or not min_score <= score <= max_score:
        raise Unparsable(f"score {raw} is outside [{min_score:g}, {max_score:g}]; judgement: {quoted!r}")
    return score


def rubric_messages(config: JudgeConfig, item: Item) -> list[dict[str, str]]:
    """The chat messages of one item: the optional system message and the filled-in rubric."""
    values = {
        "prompt": item.prompt,
        "completion": item.completion,
        "reference": item.reference,
        "min_score": f"{config.min_score:g}",
        "max_score": f"{config.max_score:g}",
    }
    user = config.rubric.format_map(values)
    return ([{"role": "system", "content": config.system}] if config.system else []) + [
        {"role": "user", "content": user}
    ]


@dataclass(frozen=True)
class Judgement:
    text: str  # the reply's message content ("" when there was none)
    attempts: int
    error: str = ""  # why there is no usable reply


class Judge(BatchTask):
    """One configured judge endpoint (see the module docstring)."""

    def __init__(self, config: JudgeConfig) -> None:
        self.name = config.name
        self.config = config
        key = os.environ.get(config.api_key_env, "") if config.api_key_env else ""
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._semaphore: asyncio.Semaphore | None = None
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _session(self) -> tuple[asyncio.Semaphore, httpx.AsyncClient]:
        """The client and the concurrency limit of the running event loop (the service's), made on first
        use in it: a client's connections belong to one loop, so another loop gets its own."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._semaphore is None or self._loop is not loop:
            limits = httpx.Limits(max_connections=self.config.concurrency)
            self._client = httpx.AsyncClient(timeout=self.config.timeout_s, limits=limits, trust_env=False)
            self._semaphore = asyncio.Semaphore(self.config.concurrency)
            self._loop = loop
        return self._semaphore, self._client

    def close(self) -> None:
        self._client = None  # its connections close with the event loop the service is stopping

    async def score_batch(self, items: Sequence[Item]) -> list[Verdict]:
        return list(await asyncio.gather(*(self._score(item) for item in items)))

    async def _score(self, item: Item) -> Verdict:
        started = time.monotonic()
        try:
            judgement = await asyncio.wait_for(self._ask(item), self.config.deadline_s)
        except TimeoutError:
            late = f"no judgement within the item deadline of {self.config.deadline_s:g} s"
            judgement = Judgement("", 0, late)
        latency = time.monotonic() - started
        if judgement.error:
            return timed_out(f"judge {self.name!r}: {judgement.error}")
        c = self.config
        try:
            score = parse_score(judgement.text, c.score_pattern, c.min_score, c.max_score)
        except Unparsable as error:
            return timed_out(f"judge {self.name!r}: {error}")
        reward = (score - c.min_score) / (c.max_score - c.min_score) if c.max_score > c.min_score else 0.0
        return Verdict(
            correct=False,
            reward=reward,
            extracted=None,
            reason=f"judge {self.name!r} gave {score:g} of {c.max_score:g}",
            components={"score": score, "latency_s": latency, "attempts": float(judgement.attempts)},
        )

    async def _ask(self, item: Item) -> Judgement:
        semaphore, client = self._session()
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": rubric_messages(self.config, item),
            "max_tokens": self.config.max_tokens,
            "temperature": self.config.temperature,
        }
        problem = ""
        attempts = 0
        for attempt in range(self.config.retries + 1):
            if attempt:
                await asyncio.sleep(self.config.backoff_s * 2 ** (attempt - 1))
            attempts += 1
            async with semaphore:
                try:
                    response = await client.post(self.config.endpoint, json=body, headers=self._headers)
                except httpx.TimeoutException:
                    problem = f"no reply within {self.config.timeout_s:g} s"
                    continue
                except httpx.TransportError as error:
                    problem = f"cannot reach {self.config.endpoint}: {type(error).__name__}: {error}"
                    continue
            if response.status_code in RETRIED_STATUS:
                problem = f"HTTP {response.status_code}: {response.text[:QUOTED_CHARS]!r}"
                continue
            if response.status_code != 200:
                refused = f"HTTP {response.status_code}: {response.text[:QUOTED_CHARS]!r}"
                return Judgement("", attempts, refused)
            return _reply(response, attempts)
        return Judgement("", attempts, f"{problem} (after {attempts} attempts)")


def _reply(response: httpx.Response, attempts: int) -> Judgement:
    """The message content of a chat-completions reply, or why there is none."""
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return Judgement("", attempts, f"not a chat-completions reply: {response.text[:QUOTED_CHARS]!r}")
    if not isinstance(content, str):
        return Judgement("", attempts, f"the reply's content is not text: {str(content)[:QUOTED_CHARS]!r}")
    return Judgement(content, attempts)
