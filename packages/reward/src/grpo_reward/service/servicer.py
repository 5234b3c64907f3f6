"""RewardService.Score: validate, grade each item's task in the worker pool (never on the event loop),
weigh the components by the spec."""

from __future__ import annotations

import logging
from dataclasses import replace

import grpc
from grpo.v1 import reward_pb2
from grpo_common.row_fields import FieldLimits

from grpo_reward.service.convert import InvalidRequest, items_from_proto, result_to_proto, spec_from_proto
from grpo_reward.spec import apply_spec
from grpo_reward.verifier import Verifier

logger = logging.getLogger(__name__)

SERVICE_NAME = reward_pb2.DESCRIPTOR.services_by_name["RewardService"].full_name


class RewardServicer:
    """Scores batches with a shared Verifier; see grpo.v1.RewardService for the contract."""

    def __init__(
        self,
        verifier: Verifier,
        *,
        max_batch_items: int,
        default_timeout_s: float,
        field_limits: FieldLimits | None = None,
    ) -> None:
        self._verifier = verifier
        self._max_batch_items = max_batch_items
        self._default_timeout_s = default_timeout_s
        self._field_limits = field_limits or FieldLimits()

    async def Score(
        self, request: reward_pb2.ScoreRequest, context: grpc.aio.ServicerContext
    ) -> reward_pb2.ScoreResponse:
        # an undecodable body never gets here: grpo_common.server.registration guards every method
        # (INVALID_ARGUMENT naming the field, e.g. "items[3].completion is not valid UTF-8")
        try:
            spec = spec_from_proto(request, self._default_timeout_s)
            items = items_from_proto(request, self._max_batch_items, self._field_limits)
        except InvalidRequest as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            return reward_pb2.ScoreResponse()  # not reached: abort raises
        # each item once for its own task, then once per task named as a component
        jobs = items + [replace(item, task=name) for name in spec.task_terms for item in items]
        verdicts = await self._verifier.averify_items(
            jobs, timeout_s=spec.timeout_s, fallback_last_number=spec.fallback_last_number
        )
        count = len(items)
        results = []
        for index, item in enumerate(request.items):
            terms = {
                name: verdicts[count * (1 + number) + index] for number, name in enumerate(spec.task_terms)
            }
            scored = apply_spec(verdicts[index], spec, item.completion_tokens, terms)
            results.append(result_to_proto(item.id, scored))
        logger.debug(
            "scored %d items (%d correct, %d timed out)",
            len(results),
            sum(result.correct for result in results),
            sum(result.timed_out for result in results),
        )
        return reward_pb2.ScoreResponse(results=results)
