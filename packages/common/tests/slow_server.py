"""A rollout server whose GetInfo takes --delay seconds; test_shutdown.py runs it as a real process.

It touches --started-file when a GetInfo call begins, so the test can send SIGTERM while the call
is in flight, and it serves with grpo_common's serve_until_signalled exactly like a service CLI.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from grpo.v1 import rollout_pb2, rollout_pb2_grpc
from grpo_common.logging_setup import configure_logging
from grpo_common.server import ServerConfig, registration, serve_until_signalled, start_server


class SlowInfoServicer(rollout_pb2_grpc.RolloutServiceServicer):
    def __init__(self, delay: float, started_file: Path) -> None:
        self.delay = delay
        self.started_file = started_file

    async def GetInfo(self, request, context):
        self.started_file.touch()
        await asyncio.sleep(self.delay)
        return rollout_pb2.RolloutInfo(model="slow", policy_version=7)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--started-file", type=Path, required=True)
    parser.add_argument("--delay", type=float, required=True)
    parser.add_argument("--grace", type=float, required=True)
    args = parser.parse_args()
    configure_logging("INFO")
    service = registration(
        SlowInfoServicer(args.delay, args.started_file),
        rollout_pb2_grpc.add_RolloutServiceServicer_to_server,
        "grpo.v1.RolloutService",
    )
    running = await start_server([service], ServerConfig(port_file=args.port_file, grace_seconds=args.grace))
    await serve_until_signalled(running)


if __name__ == "__main__":
    asyncio.run(main())
