"""Worker lanes: a burst of slow `code` items never holds a cheap item in a queue. Checked against a real
`grpo-reward serve` on loopback by counting how much of the burst had finished when the math item came
back (with one FIFO queue and one worker, all of it had), never by timing it."""

from __future__ import annotations

import json
import threading

import grpc
from grpo.v1 import reward_pb2, reward_pb2_grpc
from grpo_reward import Verifier
from grpo_reward.verifier import Item
from reward_fixtures import reward_server

BURST = 32
SLOW_PROGRAM = "```python\nimport time\ndef slow():\n    time.sleep(0.25)\n    return 1\n```"
SLOW_FIELDS = json.dumps({"tests": ["assert slow() == 1"], "time_limit_s": 2})
NEEDS_A_WORKER = r"so \boxed{(x+1)^2}"  # sympy: not decided by the math task's quick path


def test_a_math_item_overtakes_a_burst_of_32_code_items_on_one_worker_per_lane() -> None:
    server = reward_server(["--workers", "1", "--log-level", "WARNING"])
    with server as address, grpc.insecure_channel(address) as channel:
        stub = reward_pb2_grpc.RewardServiceStub(channel)
        spec = reward_pb2.RewardSpec(timeout_s=10)
        burst = [
            stub.Score.future(
                reward_pb2.ScoreRequest(
                    items=[
                        reward_pb2.ScoreItem(
                            id=f"code{number}",
                            task="code",
                            completion=SLOW_PROGRAM,
                            reference="-",
                            fields_json=SLOW_FIELDS,
                        )
                    ],
                    spec=spec,
                ),
                timeout=300,
            )
            for number in range(BURST)
        ]
        one_done = threading.Event()
        for call in burst:
            call.add_done_callback(lambda _: one_done.set())
        assert one_done.wait(300), "no code item of the burst came back"  # the burst is queued by now
        math_item = reward_pb2.ScoreItem(id="m", completion=NEEDS_A_WORKER, reference="x^2+2x+1")
        result = stub.Score(reward_pb2.ScoreRequest(items=[math_item], spec=spec), timeout=300)
        finished = sum(call.done() for call in burst)
        for call in burst:
            call.cancel()
    assert result.results[0].correct, result.results[0].reason
    first = next(call for call in burst if call.done() and not call.cancelled()).result().results[0]
    assert first.reward == 1.0, first.reason
    # one FIFO queue with one worker: the math item ran after the whole burst (finished == 32)
    assert finished < BURST // 2, f"the math item waited for {finished} of {BURST} code items"


def test_a_lane_starts_with_its_first_item_and_takes_its_configured_size() -> None:
    code = "```python\ndef one():\n    return 1\n```"
    with Verifier(workers=1, lane_workers={"code": 2}) as verifier:
        assert verifier.wait_ready(120)
        assert verifier.lanes() == {"default": 1}
        verdict = verifier.submit_item(Item(code, "-", "code", {"tests": ["assert one() == 1"]})).result()
        assert verdict.reward == 1.0, verdict.reason
        assert verifier.lanes() == {"default": 1, "code": 2}
    with Verifier(workers=1, task_lanes={"code": "default"}) as one_lane:  # the operator's override
        verdict = one_lane.submit_item(Item(code, "-", "code", {"tests": ["assert one() == 1"]})).result()
        assert verdict.reward == 1.0, verdict.reason
        assert one_lane.lanes() == {"default": 1}
