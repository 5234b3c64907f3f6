"""How fast does a state dict cross a real gRPC loopback connection, next to a plain TCP socket?

    uv run python benchmarks/weight_transfer.py            # ~1 GiB fp32 and bf16, buckets 4/16/32/64 MiB
    uv run python benchmarks/weight_transfer.py --gib 0.25 --buckets 16 32

The receiver runs in its own process (as a rollout service would): a gRPC server whose
UpdateWeights decodes every chunk with WeightStreamDecoder (checksums and all) and answers with the
byte count, and a plain TCP socket that reads the same number of bytes into one buffer. The
sender encodes with encode_state_dict. Both figures come from the same run on the same machine,
so their ratio is what the codec and gRPC cost on top of moving the bytes. The state dict mixes
tensor sizes like a decoder-only transformer: big embeddings, mid-size projections, tiny norms.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import platform
import socket
import time
from dataclasses import dataclass

import grpc
import torch
from grpo.v1 import rollout_pb2, rollout_pb2_grpc
from grpo_common.channel import ChannelConfig, create_channel
from grpo_common.server import ServerConfig, registration, start_server
from grpo_common.weight_codec import WeightStreamDecoder, WeightStreamError, encode_state_dict

MIB = 1024 * 1024


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
    """Decodes (and verifies) the stream like a rollout service would, then drops the tensors."""

    async def UpdateWeights(self, request_iterator, context):
        decoder = WeightStreamDecoder()
        try:
            async for chunk in request_iterator:
                decoder.feed(chunk)
            decoded = decoder.finish()
        except WeightStreamError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return rollout_pb2.UpdateWeightsResponse(
            policy_version=decoded.policy_version, tensors=len(decoded.tensors), bytes=decoded.total_bytes
        )


def _receiver(max_message_bytes: int, ports: mp.Queue) -> None:
    """The receiving process: a gRPC server and a raw TCP sink; reports both ports, runs until killed."""
    torch.set_num_threads(1)
    listener = socket.create_server(("127.0.0.1", 0))
    name = rollout_pb2.DESCRIPTOR.services_by_name["RolloutService"].full_name

    async def main() -> None:
        service = registration(_SinkServicer(), rollout_pb2_grpc.add_RolloutServiceServicer_to_server, name)
        running = await start_server([service], ServerConfig(max_message_bytes=max_message_bytes))
        ports.put((running.port, listener.getsockname()[1]))
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.run_in_executor(None, listener.accept)
            await loop.run_in_executor(None, _drain, conn)

    asyncio.run(main())


def _drain(conn: socket.socket) -> None:
    """Read an 8-byte length, then that many bytes into one buffer, then acknowledge with one byte."""
    with conn:
        total = int.from_bytes(_recv_exact(conn, 8), "little")
        buffer = bytearray(total)
        view = memoryview(buffer)
        got = 0
        while got < total:
            n = conn.recv_into(view[got:], min(total - got, 4 * MIB))
            if n == 0:
                raise ConnectionError("sender closed early")
            got += n
        conn.sendall(b"k")


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        more = conn.recv(n - len(data))
        if not more:
            raise ConnectionError("sender closed early")
        data += more
    return data


def raw_tcp_seconds(port: int, tensors: dict[str, torch.Tensor]) -> float:
    """Send every tensor's bytes over one plain socket; time until the receiver acknowledges."""
    views = [memoryview(t.contiguous().view(torch.uint8).numpy()) for t in tensors.values()]
    total = sum(v.nbytes for v in views)
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(total.to_bytes(8, "little"))
        for view in views:
            conn.sendall(view)
        if conn.recv(1) != b"k":
            raise ConnectionError("receiver did not acknowledge")
    return time.perf_counter() - start


async def grpc_seconds(
    port: int, tensors: dict[str, torch.Tensor], bucket_bytes: int, max_message_bytes: int
) -> float:
    channel = create_channel(f"127.0.0.1:{port}", ChannelConfig(max_message_bytes=max_message_bytes))
    async with channel:
        stub = rollout_pb2_grpc.RolloutServiceStub(channel)
        start = time.perf_counter()
        response = await stub.UpdateWeights(encode_state_dict(tensors, 1, bucket_bytes), timeout=600)
        elapsed = time.perf_counter() - start
    expected = sum(t.nbytes for t in tensors.values())
    if response.bytes != expected:
        raise RuntimeError(f"receiver decoded {response.bytes} bytes, sent {expected}")
    return elapsed


@dataclass
class Row:
    dtype: str
    bucket_mib: int
    grpc_gbps: float
    raw_gbps: float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="state dict size per dtype")
    parser.add_argument("--buckets", type=int, nargs="+", default=[4, 16, 32, 64], help="bucket sizes, MiB")
    parser.add_argument("--repeats", type=int, default=2, help="best of N for each figure")
    args = parser.parse_args()
    torch.set_num_threads(1)
    # The 64 MiB bucket needs room above the 64 MiB default limit for the message framing.
    max_message_bytes = (max(args.buckets) + 8) * MIB
    ports: mp.Queue = mp.get_context("spawn").Queue()
    receiver = mp.get_context("spawn").Process(target=_receiver, args=(max_message_bytes, ports), daemon=True)
    receiver.start()
    grpc_port, raw_port = ports.get(timeout=60)
    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    )
    print(f"python {platform.python_version()}, torch {torch.__version__}")
    rows: list[Row] = []
    try:
        for dtype in (torch.float32, torch.bfloat16):
            tensors = transformer_state_dict(int(args.gib * 1024**3), dtype)
            nbytes = sum(t.nbytes for t in tensors.values())
            print(
                f"\n{str(dtype).removeprefix('torch.')}: {len(tensors)} tensors, {nbytes / 1024**3:.2f} GiB"
            )
            for bucket in args.buckets:
                raw = min(raw_tcp_seconds(raw_port, tensors) for _ in range(args.repeats))
                grpc_s = min(
                    asyncio.run(grpc_seconds(grpc_port, tensors, bucket * MIB, max_message_bytes))
                    for _ in range(args.repeats)
                )
                row = Row(
                    str(dtype).removeprefix("torch."), bucket, nbytes / grpc_s / 1e9, nbytes / raw / 1e9
                )
                rows.append(row)
                print(
                    f"  bucket {bucket:3d} MiB: gRPC+codec {row.grpc_gbps:5.2f} GB/s, raw TCP "
                    f"{row.raw_gbps:5.2f} GB/s, ratio {row.grpc_gbps / row.raw_gbps:4.0%}",
                    flush=True,
                )
    finally:
        receiver.kill()
        receiver.join()


if __name__ == "__main__":
    main()
