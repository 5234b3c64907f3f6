"""An NCCL weight update in progress on the sglang backend (see `SGLangGenerator.begin_distributed_update`).

Per bucket, update_weights_from_distributed goes to every worker at once (they answer after the
learner's broadcast). The version is sent with the last bucket only, so no engine reports it
before the whole update is in. A refused bucket ends the update: the workers are restored from the
last checkpoint on disk when it is the current version, else generation is refused
(WeightsUnusable) until a complete update succeeds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from grpo_rollout.backends.contract import WeightUpdateError
from grpo_rollout.backends.sglang.fleet import failure_kind, failures, who

if TYPE_CHECKING:
    from grpo_rollout.backends.sglang.generator import SGLangGenerator

logger = logging.getLogger(__name__)


@dataclass
class DistributedUpdate:
    """An NCCL weight update in progress: workers paused, the generator's gate held exclusively.

    Made by `SGLangGenerator.begin_distributed_update`; ends with the last bucket, a refused
    bucket, or `abandon()`. Every ending resumes generation and releases the gate exactly once.
    """

    generator: SGLangGenerator
    version: int
    group_name: str
    _gate_exit: object = field(repr=False)
    buckets: int = 0  # buckets forwarded to the workers so far
    done: bool = False

    async def receive_bucket(
        self,
        names: Sequence[str],
        dtypes: Sequence[str],
        shapes: Sequence[Sequence[int]],
        last: bool,
    ) -> None:
        if self.done:
            raise WeightUpdateError(f"the update to version {self.version} is already over")
        if not len(names) == len(dtypes) == len(shapes):
            raise ValueError("names, dtypes and shapes must have the same length")
        generator = self.generator
        self.buckets += 1
        weight_version = str(self.version) if last else None
        try:
            results = await asyncio.gather(
                *(
                    w.update_weights_from_distributed(
                        names, dtypes, shapes, weight_version, self.group_name, flush_cache=last
                    )
                    for w in generator._workers
                ),
                return_exceptions=True,
            )
        except asyncio.CancelledError:
            # The caller went away mid-bucket: clean up in the background (this task is cancelled).
            asyncio.get_running_loop().create_task(self.abandon("the bucket's caller was cancelled"))
            raise
        failed = failures(generator._workers, results)
        if failed:
            error = failed[0][1]
            restored = await self._end_without_adopting(f"bucket {self.buckets - 1} failed: {error}")
            raise failure_kind(failed)(
                f"{who(failed)} failed to receive bucket {self.buckets - 1} of version {self.version}: "
                f"{error}; all workers stay on version {generator._version}, {restored}"
            )
        if last:
            generator._version = self.version
            generator._current_weights = None  # this version exists only in the engines
            generator._unusable = None
            generator._adapters.forget()
            await self._finish()
            logger.info(
                "sglang workers updated to version %d over group %r (%d bucket(s))",
                self.version,
                self.group_name,
                self.buckets,
            )

    async def abandon(self, reason: str) -> None:
        if not self.done:
            restored = await self._end_without_adopting(reason)
            logger.warning("update to version %d abandoned (%s); %s", self.version, reason, restored)

    async def _end_without_adopting(self, reason: str) -> str:
        """Restore the old weights if they are on disk, else mark the engines unusable; resume."""
        generator = self.generator
        try:
            if self.buckets == 0:
                return "nothing had been sent"
            if generator._current_weights is not None and await generator._roll_back(generator._workers):
                return f"restored from {generator._current_weights}"
            generator._unusable = (
                f"an update to version {self.version} failed part-way ({reason}), so the SGLang engines "
                f"hold a mix of old and new tensors and version {generator._version} is not on disk to "
                "restore; push a complete update (UpdateWeights or UpdateWeightsDistributed) to resume"
            )
            return "their weights are unusable until a complete update succeeds"
        finally:
            await self._finish()

    async def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            await self.generator._continue_all()
        finally:
            await self._gate_exit.__aexit__(None, None, None)  # type: ignore[attr-defined]
