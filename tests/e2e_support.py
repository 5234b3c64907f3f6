"""Shared pieces of the end-to-end and fault tests: real processes, real gRPC on loopback.

Everything here starts the console scripts of this environment (`grpo`, `grpo-reward`,
`grpo-rollout`) as separate processes, the way a user deploys them, and gives the tests a way to
look at them from outside: their port files, their logs, `GetInfo`, `/proc`, and a wire tap that
counts the groups each rollout service streams back (the services do not log requests).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import torch
from google.protobuf.message import DecodeError
from grpo.v1 import rollout_pb2, rollout_pb2_grpc
from grpo_learner.embedded.model import build_tiny_model
from grpo_learner.embedded.task import split_problems
from grpo_learner.embedded.tokenizer import build_tokenizer
from grpo_learner.embedded.warmup import supervised_warmup

# The CI box has 2 cores shared with other work: a torch process with 2 OpenMP threads on a busy
# core spin-waits and runs ~25x slower than with 1 (measured: 2.5 s vs 0.1 s per warm-up step).
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

PROMPTS_PER_STEP = 8
GROUP_SIZE = 4

# Small enough for 2 CPU cores: 8 prompts x 4 completions of <= 12 tokens per step.
LEARNER_FLAGS = [
    "--no-progress",
    "--set", "data.apply_chat_template=false",
    "--set", f"rollout.group_size={GROUP_SIZE}",
    "--set", f"rollout.prompts_per_step={PROMPTS_PER_STEP}",
    "--set", "rollout.sampling.max_new_tokens=12",
    "--set", "rollout.sampling.temperature=1.0",
    "--set", "rollout.backoff_s=0.2",
    "--set", "train.micro_batch_size=32",
    "--set", "train.device=cpu",
    "--set", "optim.lr=1e-3",
    "--set", "tensorboard=false",
]  # fmt: skip


def console_script(name: str) -> str:
    """The console script installed beside this interpreter (the workspace venv)."""
    path = Path(sys.executable).with_name(name)
    assert path.exists(), f"{path} is missing: run `uv sync` in the workspace"
    return str(path)


# --- assets -----------------------------------------------------------------------------------


def build_assets(root: Path, warmup_steps: int = 30) -> tuple[Path, Path]:
    """A tiny warmed-up model (HF format, embedded tokenizer) and a JSONL of problems.

    A short supervised warm-up gives groups mixed rewards, so GRPO steps have real gradients.
    """
    tokenizer = build_tokenizer()
    model = build_tiny_model(tokenizer, seed=0)
    train, _ = split_problems(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        supervised_warmup(model, tokenizer, train, steps=warmup_steps, seed=0)
    finally:
        torch.set_num_threads(threads)
    model_dir = root / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    data = root / "problems.jsonl"
    data.write_text("".join(json.dumps({"question": p.prompt, "answer": p.reference}) + "\n" for p in train))
    return model_dir, data


# --- processes --------------------------------------------------------------------------------


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class Processes:
    """Every process a test starts; `close()` (from a fixture's finally) stops what is still alive."""

    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def popen(self, argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=CHILD_ENV)
        self.started.append(process)
        return process

    def launch_service(self, name: str, argv: list[str], state_dir: Path, port: int = 0) -> PendingService:
        port_file = state_dir / f"{name}.port"
        port_file.unlink(missing_ok=True)
        command = [*argv, "--host", "127.0.0.1", "--port", str(port), "--port-file", str(port_file)]
        log_path = state_dir / f"{name}.log"
        return PendingService(name, self.popen(command, log_path), port_file, log_path)

    def close(self) -> None:
        for process in reversed(self.started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in reversed(self.started):
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class PendingService:
    """A service process that was started and has not yet announced its port."""

    name: str
    process: subprocess.Popen[bytes]
    port_file: Path
    log_path: Path

    def ready(self, timeout_s: float = 240) -> Service:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.port_file.read_text().strip() if self.port_file.exists() else ""
            if text.isdigit():
                return Service(self.name, self.process, int(text), self.log_path)
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited ({self.process.returncode}):\n{tail(self.log_path)}"
                )
            time.sleep(0.1)
        raise AssertionError(f"{self.name} did not serve within {timeout_s:.0f} s:\n{tail(self.log_path)}")


def reward_argv() -> list[str]:
    return [console_script("grpo-reward"), "serve", "--workers", "1"]


def rollout_argv(model: Path, reward_address: str) -> list[str]:
    return [
        console_script("grpo-rollout"), "serve", "--model", str(model), "--generator", "hf",
        "--device", "cpu", "--torch-threads", "1", "--reward-address", reward_address,
    ]  # fmt: skip


def learner_argv(run_dir: Path, model: Path, data: Path, rollouts: Iterable[str], *extra: str) -> list[str]:
    argv = [console_script("grpo"), "train", "--model", str(model), "--data", str(data)]
    argv += ["--run-dir", str(run_dir)]
    for address in rollouts:
        argv += ["--rollout", address]
    return [*argv, *LEARNER_FLAGS, *extra]


def finish(process: subprocess.Popen[bytes], log_path: Path, timeout_s: float = 300) -> None:
    """Wait for a learner and require a clean exit, showing its log if not."""
    try:
        code = process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"still running after {timeout_s:.0f} s:\n{tail(log_path)}") from None
    assert code == 0, f"exit code {code}:\n{tail(log_path)}"


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else f"({path} does not exist)"


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def processes_mentioning(text: str) -> list[int]:
    """Live processes (zombies have no cmdline) whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- looking at a run -------------------------------------------------------------------------


def rollout_info(address: str) -> rollout_pb2.RolloutInfo:
    with grpc.insecure_channel(address) as channel:
        return rollout_pb2_grpc.RolloutServiceStub(channel).GetInfo(rollout_pb2.GetInfoRequest(), timeout=10)


def raw_metrics(run_dir: Path) -> list[dict[str, float]]:
    """Every line of metrics.jsonl in write order (read_metrics keeps one per step)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def trainer_state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / "trainer_state.json").read_text())


# --- wire tap ---------------------------------------------------------------------------------

HTTP2_DATA = 0x0
HTTP2_PADDED = 0x8


class GroupTap:
    """A TCP relay in front of one rollout service that records the RolloutGroups it streams back.

    The learner is given the tap's address instead of the service's; bytes pass unchanged both
    ways. The service-to-client direction is split into HTTP/2 frames, DATA payloads are joined per
    stream and cut into gRPC length-prefixed messages, and every message that parses as a whole
    RolloutGroup (group_size completions, each with one logprob per token) is recorded.
    """

    def __init__(self, target_port: int, group_size: int) -> None:
        self.target_port = target_port
        self.group_size = group_size
        self.prompt_ids: list[str] = []
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name="tap-accept").start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, _Http2Reader(self)), daemon=True
            ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, reader: _Http2Reader | None) -> None:
        try:
            while data := source.recv(65536):
                if reader is not None:
                    reader.feed(data)
                sink.sendall(data)
        except OSError:
            pass
        for sock in (sink, source):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def record(self, message: bytes) -> None:
        try:
            group = rollout_pb2.RolloutGroup.FromString(message)
        except DecodeError:
            return
        whole = len(group.completions) == self.group_size and all(
            len(c.token_ids) == len(c.logprobs) > 0 for c in group.completions
        )
        if group.prompt_id and whole:
            with self._lock:
                self.prompt_ids.append(group.prompt_id)


class _Http2Reader:
    """Server-to-client HTTP/2 bytes -> gRPC messages (uncompressed) handed to the tap."""

    def __init__(self, tap: GroupTap) -> None:
        self.tap = tap
        self.buffer = b""
        self.streams: dict[int, bytes] = {}

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 9:
            length = int.from_bytes(self.buffer[:3], "big")
            if len(self.buffer) < 9 + length:
                return
            kind, flags = self.buffer[3], self.buffer[4]
            stream = int.from_bytes(self.buffer[5:9], "big") & 0x7FFFFFFF
            payload, self.buffer = self.buffer[9 : 9 + length], self.buffer[9 + length :]
            if kind != HTTP2_DATA:
                continue
            if flags & HTTP2_PADDED:
                payload = payload[1 : len(payload) - payload[0]]
            pending = self.streams.get(stream, b"") + payload
            while len(pending) >= 5 and len(pending) >= 5 + (size := int.from_bytes(pending[1:5], "big")):
                if pending[0] == 0:  # not compressed
                    self.tap.record(pending[5 : 5 + size])
                pending = pending[5 + size :]
            self.streams[stream] = pending
