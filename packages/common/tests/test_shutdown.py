"""Graceful shutdown of a real server process on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpo.v1 import rollout_pb2, rollout_pb2_grpc
from grpo_common.channel import create_channel

SCRIPT = Path(__file__).with_name("slow_server.py")


def _start(tmp_path: Path, delay: float, grace: float) -> tuple[subprocess.Popen[str], int, Path]:
    port_file, started_file = tmp_path / "port", tmp_path / "started"
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--port-file", str(port_file), "--started-file", str(started_file),
         "--delay", str(delay), "--grace", str(grace)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"server did not start: {process.communicate()[1]}")
        time.sleep(0.05)
    return process, int(port_file.read_text()), started_file


async def _call_then_signal(port: int, started_file: Path, process: subprocess.Popen[str], sig: int):
    """Start a slow call, signal the server while it runs, return (its result, a later call's error)."""
    async with create_channel(f"127.0.0.1:{port}") as channel:
        stub = rollout_pb2_grpc.RolloutServiceStub(channel)
        call = asyncio.ensure_future(stub.GetInfo(rollout_pb2.GetInfoRequest(), timeout=20))
        while not started_file.exists():
            await asyncio.sleep(0.02)
        process.send_signal(sig)
        await asyncio.sleep(0.3)  # the server is draining now
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await stub.GetInfo(rollout_pb2.GetInfoRequest(), timeout=5)
        try:
            result: object = await call
        except grpc.aio.AioRpcError as exc:
            result = exc
        return result, late.value


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_lets_the_in_flight_call_finish_then_exits_zero(tmp_path, sig) -> None:
    process, port, started_file = _start(tmp_path, delay=1.5, grace=10)
    try:
        result, late = asyncio.run(_call_then_signal(port, started_file, process, sig))
        assert isinstance(result, rollout_pb2.RolloutInfo) and result.policy_version == 7
        assert late.code() == grpc.StatusCode.UNAVAILABLE  # new calls are refused while draining
        assert process.wait(timeout=10) == 0
        assert "draining in-flight calls" in process.stderr.read()
    finally:
        process.kill()
        process.communicate()


def test_calls_longer_than_the_grace_period_are_cut_and_the_process_still_exits(tmp_path) -> None:
    process, port, started_file = _start(tmp_path, delay=30, grace=0.5)
    try:
        result, _late = asyncio.run(_call_then_signal(port, started_file, process, signal.SIGTERM))
        assert isinstance(result, grpc.aio.AioRpcError)  # cut: the 30 s call never finished
        assert result.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
        assert process.wait(timeout=25) == 0  # exited while the call would still have been running
    finally:
        process.kill()
        process.communicate()
