"""`[limits]`: what one servicer accepts and how it batches, completed by the backend's own defaults."""

from __future__ import annotations

from dataclasses import dataclass

from grpo_common.config import ConfigSection
from pydantic import Field

from grpo_rollout.backends.registry import GENERATORS


@dataclass(frozen=True)
class ServiceLimits:
    """The limits one servicer enforces, resolved for its backend by `LimitSettings.for_backend`
    (the defaults live in `LimitSettings` and the backend's `BackendLimits`, nowhere else)."""

    max_in_flight_prompts: int  # accepted and not yet streamed; beyond -> RESOURCE_EXHAUSTED
    max_prompts_per_request: int
    max_group_size: int
    batch_prompts: int | None  # prompts per generate call (None: batch_sequences // group size)
    batch_sequences: int  # rows per generate call when batch_prompts is None
    max_concurrent_batches: int  # generate calls running at once, service-wide
    batches_ahead: int  # per request: batches generated ahead of a slow reader
    stream_buffer_groups: int  # scored groups waiting for the reader
    max_update_bytes: int | None  # largest weight update accepted
    distributed_update_idle_s: float  # an open NCCL update with no next bucket is abandoned
    fingerprint_recheck_s: float  # GetInfo re-reads the served weights' fingerprint this often (0: never)


class LimitSettings(ConfigSection):
    max_in_flight_prompts: int = Field(4096, ge=1)
    max_prompts_per_request: int = Field(4096, ge=1)
    max_group_size: int = Field(512, ge=2)
    batch_prompts: int | None = Field(
        None,
        ge=1,
        description="prompts per generate call (unset: the backend's; hf: batch_sequences // G)",
    )
    batch_sequences: int = Field(
        256,
        ge=1,
        description="hf, batch_prompts unset: rows (prompts x group size) per generate call; one call of "
        "256 rows costs about what one of 64 does on a small model, whose decode step is overhead",
    )
    max_concurrent_batches: int | None = Field(None, ge=1, description="unset: the backend's default")
    batches_ahead: int = Field(2, ge=1)
    stream_buffer_groups: int = Field(8, ge=1)
    max_update_bytes: int | None = Field(None, ge=1)
    distributed_update_idle_s: float = Field(
        600.0, gt=0, description="an open NCCL weight update whose next bucket does not come is abandoned"
    )
    fingerprint_recheck_s: float = Field(
        30.0,
        ge=0,
        description="a GetInfo at least this long after the last reading hashes the served weights again "
        "(in the background; one pass over the model) so the learner's probes catch weights that changed "
        "after an update; 0: only after updates",
    )

    def for_backend(self, backend: str) -> ServiceLimits:
        """These limits, with what is unset taken from the backend's own defaults (`GENERATORS`)."""
        wanted = GENERATORS[backend].limits
        return ServiceLimits(
            max_in_flight_prompts=self.max_in_flight_prompts,
            max_prompts_per_request=self.max_prompts_per_request,
            max_group_size=self.max_group_size,
            batch_prompts=self.batch_prompts or wanted.batch_prompts,
            batch_sequences=self.batch_sequences,
            max_concurrent_batches=self.max_concurrent_batches or wanted.max_concurrent_batches,
            batches_ahead=max(self.batches_ahead, wanted.min_batches_ahead),
            stream_buffer_groups=self.stream_buffer_groups,
            max_update_bytes=self.max_update_bytes,
            distributed_update_idle_s=self.distributed_update_idle_s,
            fingerprint_recheck_s=self.fingerprint_recheck_s,
        )
