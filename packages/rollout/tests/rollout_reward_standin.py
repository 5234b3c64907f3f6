"""A small real RewardService for the rollout tests (gRPC on loopback, sync server in threads).

Used until grpo_reward's own server can be started here; it follows reward.proto: results in
request order, INVALID_ARGUMENT for empty/duplicate ids. The verdict is deliberately simple (the
reference appears in the completion). Knobs: `fail_next` calls answer UNAVAILABLE, `delay_s`
slows each call, items whose id is in `timed_out_ids` come back timed out (v1.1: reward 0,
`timed_out`); every request is recorded.
"""

from __future__ import annotations

import threading
import time
from concurrent import futures

import grpc
from grpo.v1 import reward_pb2, reward_pb2_grpc


class RewardStandin(reward_pb2_grpc.RewardServiceServicer):
    def __init__(self) -> None:
        self.requests: list[reward_pb2.ScoreRequest] = []
        self.authorizations: list[str | None] = []  # each call's `authorization` metadata
        self.fail_next = 0
        self.fail_after: int | None = None  # answer UNAVAILABLE from this call number on
        self.delay_s = 0.0
        self.timed_out_ids: set[str] = set()
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self.address = ""

    def Score(
        self, request: reward_pb2.ScoreRequest, context: grpc.ServicerContext
    ) -> reward_pb2.ScoreResponse:
        with self._lock:
            self.requests.append(request)
            self.authorizations.append(dict(context.invocation_metadata()).get("authorization"))
            calls = len(self.requests)
            fail = self.fail_next > 0 or (self.fail_after is not None and calls > self.fail_after)
            self.fail_next -= int(self.fail_next > 0)
        if self.delay_s:
            time.sleep(self.delay_s)
        if fail:
            context.abort(grpc.StatusCode.UNAVAILABLE, "reward stand-in told to fail")
        ids = [item.id for item in request.items]
        if "" in ids or len(set(ids)) != len(ids):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "items: empty or duplicate id")
        response = reward_pb2.ScoreResponse()
        for item in request.items:
            if item.id in self.timed_out_ids:
                response.results.add(id=item.id, reason="timeout after 1 s", timed_out=True)
                continue
            correct = bool(item.reference) and item.reference in item.completion
            result = response.results.add(
                id=item.id,
                reward=float(correct),
                correct=correct,
                reason="reference found" if correct else "no final answer found",
            )
            result.components["correctness"] = float(correct)
            if item.completion:
                result.extracted = item.completion[-1]
        return response

    def start(self) -> RewardStandin:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        reward_pb2_grpc.add_RewardServiceServicer_to_server(self, self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self.address = f"127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(0).wait()

    @property
    def items_scored(self) -> int:
        return sum(len(r.items) for r in self.requests)
