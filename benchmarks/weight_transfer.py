"""How fast does a state dict cross a real gRPC loopback connection, next to a plain TCP socket?

    uv run python benchmarks/weight_transfer.py            # ~1 GiB fp32 and bf16, buckets 4/16/32/64 MiB
    uv run python benchmarks/weight_transfer.py --gib 0.25 --buckets 4 --pairs 15 --paths wire wire-unchecked

The receiver runs in its own process (as a rollout service would): gRPC servers whose
UpdateWeights decodes every chunk with WeightStreamDecoder (checksums and all) and answers with the
byte count, and a plain TCP socket that reads the same number of bytes into one buffer. Two gRPC
paths are measured: "wire", what the learner and the rollout service use (chunks written and read
straight from their wire bytes, grpo_common.weights.wire, into memory the previous update left,
grpo_common.weights.receive_buffers), and "protobuf", the generated message
classes on both sides (encode_state_dict and the generated deserializer), for comparison.
"wire-unchecked" is "wire" without the receiver's refusal of NaN / inf tensors
(`allow_non_finite`), so one run shows what that check costs.
Raw TCP and gRPC run in alternating pairs (`--pairs`, raw first), and the figure is the median of
the pairs' ratios (raw seconds / gRPC seconds): what the codec and gRPC cost on top of moving the
bytes. On a shared, busy machine wall-clock rates swing with the neighbours' load, so the CPU
seconds per GiB that the sender and the receiver process spent (all their threads) are printed
too: those swing far less. The state dict mixes tensor sizes like a
decoder-only transformer: big embeddings, mid-size projections, tiny norms.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import multiprocessing as mp
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import torch
from grpo.v1 import rollout_pb2, rollout_pb2_grpc
from grpo_common.channel import ChannelConfig, create_channel
from grpo_common.server import ServerConfig, registration, start_server
from grpo_common.weights.codec import (
    WeightStreamDecoder,
    WeightStreamError,
    encode_state_dict,
    encode_state_dict_wire,
    read_weight_chunk,
    update_weights_method,
)
from grpo_common.weights.receive_buffers import ReceiveBuffers
from results_file import Report, add_record_flag  # benchmarks/results_file.py

SECTION = "Weight transfer over gRPC"  # of benchmarks/RESULTS.md, written with --record

MIB = 1024 * 1024
PATHS = ("wire", "wire-unchecked", "protobuf")
CPU = ("sender_cpu", "receiver_cpu")


def transformer_state_dict(target_bytes: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Layers of a 2048-wide decoder (plus embeddings) until the dict holds about target_bytes."""
    hidden, ffn, vocab = 2048, 5632, 32000
    gen = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(dtype)

    tensors = {"model.embed_tokens.weight": rand(vocab, hidden), "lm_head.weight": rand(vocab, hidden)}
    layer = 0
    while sum(t.nbytes for t in tensors.values()) < target_bytes:
        prefix = f"model.layers.{layer}"
        for name, shape in (
            ("input_layernorm.weight", (hidden,)),
            ("self_attn.q_proj.weight", (hidden, hidden)),
            ("self_attn.k_proj.weight", (hidden // 4, hidden)),
            ("self_attn.v_proj.weight", (hidden // 4, hidden)),
            ("self_attn.o_proj.weight", (hidden, hidden)),
            ("self_attn.q_proj.bias", (hidden,)),
            ("post_attention_layernorm.weight", (hidden,)),
            ("mlp.gate_proj.weight", (ffn, hidden)),
            ("mlp.up_proj.weight", (ffn, hidden)),
            ("mlp.down_proj.weight", (hidden, ffn)),
        ):
            tensors[f"{prefix}.{name}"] = rand(*shape)
        layer += 1
    tensors["model.norm.weight"] = rand(hidden)
    return tensors


class _SinkServicer(rollout_pb2_grpc.RolloutServiceServicer):
    """Decodes (and verifies) the stream like a rollout service would, then drops the tensors.

    With `buffers`, the dropped tensors' memory is reused by the next stream, as the rollout
    service does once it has copied an update into its model.
    """

    def __init__(self, buffers: ReceiveBuffers | None = None, allow_non_finite: bool = False) -> None:
        self.buffers = buffers
        self.allow_non_finite = allow_non_finite

    async def UpdateWeights(self, request_iterator, context):
        decoder = WeightStreamDecoder(buffers=self.buffers, allow_non_finite=self.allow_non_finite)
        try:
            async for chunk in request_iterator:
                decoder.feed(chunk)
            decoded = decoder.finish()
        except WeightStreamError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if self.buffers is not None:
            self.buffers.recycle(decoded.tensors)
        return rollout_pb2.UpdateWeightsResponse(
            policy_version=decoded.policy_version, tensors=len(decoded.tensors), bytes=decoded.total_bytes
        )


def _receiver(max_message_bytes: int, ports: mp.Queue) -> None:
    """The receiving process: a gRPC server per path and a raw TCP sink; runs until killed."""
    torch.set_num_threads(1)
    listener = socket.create_server(("127.0.0.1", 0))
    name = rollout_pb2.DESCRIPTOR.services_by_name["RolloutService"].full_name
    add = rollout_pb2_grpc.add_RolloutServiceServicer_to_server
    config = ServerConfig(max_message_bytes=max_message_bytes)

    async def main() -> None:
        raw_chunks = {"UpdateWeights": read_weight_chunk}
        wire = registration(_SinkServicer(ReceiveBuffers()), add, name, raw_chunks)
        unchecked = registration(
            _SinkServicer(ReceiveBuffers(), allow_non_finite=True), add, name, raw_chunks
        )
        running = [await start_server([service], config) for service in (wire, unchecked)]
        running.append(await start_server([registration(_SinkServicer(), add, name)], config))
        ports.put(
            {path: r.port for path, r in zip(PATHS, running, strict=True)}
            | {"raw": listener.getsockname()[1]}
        )
        loop = asyncio.get_running_loop()
        kept = bytearray()
        while True:
            conn, _ = await loop.run_in_executor(None, listener.accept)
            kept = await loop.run_in_executor(None, _drain, conn, kept)

    asyncio.run(main())


def _drain(conn: socket.socket, kept: bytearray) -> bytearray:
    """Read an 8-byte length and a mode byte, then that many bytes into one buffer; acknowledge.

    Mode 0 reads into fresh memory (as issue 11's figures were taken), mode 1 into the buffer the
    previous transfer left (`kept`, returned for the next one), as the gRPC "wire" path does.
    """
    with conn:
        header = _recv_exact(conn, 9)
        total = int.from_bytes(header[:8], "little")
        buffer = kept if header[8] == 1 and len(kept) >= total else bytearray(total)
        view = memoryview(buffer)
        got = 0
        while got < total:
            n = conn.recv_into(view[got:], min(total - got, 4 * MIB))
            if n == 0:
                raise ConnectionError("sender closed early")
            got += n
        conn.sendall(b"k")
    return buffer if header[8] == 1 else kept


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        more = conn.recv(n - len(data))
        if not more:
            raise ConnectionError("sender closed early")
        data += more
    return data


def raw_tcp_seconds(port: int, tensors: dict[str, torch.Tensor], reused: bool) -> float:
    """Send every tensor's bytes over one plain socket; time until the receiver acknowledges."""
    views = [memoryview(t.contiguous().view(torch.uint8).numpy()) for t in tensors.values()]
    total = sum(v.nbytes for v in views)
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(total.to_bytes(8, "little") + bytes((int(reused),)))
        for view in views:
            conn.sendall(view)
        if conn.recv(1) != b"k":
            raise ConnectionError("receiver did not acknowledge")
    return time.perf_counter() - start


async def grpc_seconds(
    port: int, tensors: dict[str, torch.Tensor], bucket_bytes: int, max_message_bytes: int, path: str
) -> float:
    channel = create_channel(f"127.0.0.1:{port}", ChannelConfig(max_message_bytes=max_message_bytes))
    async with channel:
        if path.startswith("wire"):
            call = update_weights_method(channel)
            chunks = encode_state_dict_wire(tensors, 1, bucket_bytes)
        else:
            call = rollout_pb2_grpc.RolloutServiceStub(channel).UpdateWeights
            chunks = encode_state_dict(tensors, 1, bucket_bytes)
        start = time.perf_counter()
        response = await call(chunks, timeout=600)
        elapsed = time.perf_counter() - start
    expected = sum(t.nbytes for t in tensors.values())
    if response.bytes != expected:
        raise RuntimeError(f"receiver decoded {response.bytes} bytes, sent {expected}")
    return elapsed


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Measurement:
    """Wall seconds of one transfer and the CPU seconds the sender and the receiver spent on it."""

    seconds: float
    sender_cpu: float
    receiver_cpu: float


def measure(transfer: Callable[[], float], receiver_pid: int) -> Measurement:
    """One transfer, with its CPU cost on both sides."""
    sender, receiver = time.process_time(), cpu_seconds(receiver_pid)
    seconds = transfer()
    time.sleep(0.05)  # let the receiver's last accounting tick land
    return Measurement(seconds, time.process_time() - sender, cpu_seconds(receiver_pid) - receiver)


def compare_buckets(
    tensors: dict[str, torch.Tensor], ports: dict[str, int], receiver_pid: int, args: argparse.Namespace
) -> None:
    """For each bucket size and path: `pairs` alternating runs, raw TCP then gRPC+codec.

    Neighbours' load drifts over seconds; a raw run and the gRPC run right after it see about the
    same machine, so each pair gives one fair ratio (raw seconds / gRPC seconds), and the median
    of the pairs' ratios is the figure. Rates and CPU per GiB are medians over the same runs.
    """
    max_message_bytes = (max(args.buckets) + 8) * MIB
    nbytes = sum(t.nbytes for t in tensors.values())
    gib = nbytes / 1024**3
    raw_transfer = functools.partial(raw_tcp_seconds, ports["raw"], tensors, args.raw == "reused")
    for bucket, path in itertools.product(args.buckets, args.paths):
        send = functools.partial(grpc_seconds, ports[path], tensors, bucket * MIB, max_message_bytes, path)
        runs = [
            (measure(raw_transfer, receiver_pid), measure(lambda s=send: asyncio.run(s()), receiver_pid))
            for _ in range(args.pairs)
        ]
        ratios = sorted(raw.seconds / run.seconds for raw, run in runs)
        rate = [nbytes / statistics.median(pair[side].seconds for pair in runs) / 1e9 for side in (0, 1)]
        cpu = [
            {attr: statistics.median(getattr(pair[side], attr) for pair in runs) / gib for attr in CPU}
            for side in (0, 1)
        ]
        print(
            f"  bucket {bucket:3d} MiB, {path:14s}: ratio {statistics.median(ratios):4.0%} "
            f"(pairs {' '.join(f'{r:.0%}' for r in ratios)}) | gRPC+codec {rate[1]:5.2f} GB/s, "
            f"raw TCP {rate[0]:5.2f} GB/s | CPU s/GiB: gRPC sender {cpu[1]['sender_cpu']:4.2f} "
            f"receiver {cpu[1]['receiver_cpu']:4.2f}, raw sender {cpu[0]['sender_cpu']:4.2f} "
            f"receiver {cpu[0]['receiver_cpu']:4.2f} | load {os.getloadavg()[0]:.2f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="state dict size per dtype")
    parser.add_argument("--buckets", type=int, nargs="+", default=[4, 16, 32, 64], help="bucket sizes, MiB")
    parser.add_argument("--pairs", type=int, default=5, help="alternating raw/gRPC runs per figure")
    parser.add_argument(
        "--raw",
        choices=["fresh", "reused"],
        default="fresh",
        help="raw TCP reads into fresh memory (issue 11's baseline) or into the last transfer's buffer",
    )
    parser.add_argument("--paths", nargs="+", default=["wire", "protobuf"], choices=PATHS, help="gRPC paths")
    add_record_flag(parser, SECTION)
    args = parser.parse_args()
    with Report(SECTION) as report:
        torch.set_num_threads(1)
        # The 64 MiB bucket needs room above the 64 MiB default limit for the message framing.
        max_message_bytes = (max(args.buckets) + 8) * MIB
        context = mp.get_context("spawn")
        port_queue = context.Queue()
        receiver = context.Process(target=_receiver, args=(max_message_bytes, port_queue), daemon=True)
        receiver.start()
        ports = port_queue.get(timeout=60)
        machine = f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs"
        print(f"machine: {machine}, load {os.getloadavg()}")
        print(f"python {platform.python_version()}, torch {torch.__version__}, grpcio {grpc.__version__}")
        try:
            for dtype in (torch.float32, torch.bfloat16):
                tensors = transformer_state_dict(int(args.gib * 1024**3), dtype)
                nbytes = sum(t.nbytes for t in tensors.values())
                name = str(dtype).removeprefix("torch.")
                print(f"\n{name}: {len(tensors)} tensors, {nbytes / 1024**3:.2f} GiB", flush=True)
                compare_buckets(tensors, ports, receiver.pid, args)
        finally:
            receiver.kill()
            receiver.join()
        print(f"\nload after: {os.getloadavg()}")
    if args.record:
        report.save(sys.argv)


if __name__ == "__main__":
    main()
