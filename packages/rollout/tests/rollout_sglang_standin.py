"""A stand-in for an SGLang HTTP server: the endpoints and payloads grpo-rollout uses, nothing more.

It follows SGLang 0.5.x's native API (see the project's SGLang facts): /generate with input_ids,
per-sequence sampling_params, return_logprob, logprob_start_len; answers with output_ids and
meta_info (finish_reason {type, matched|length|message}, output_token_logprobs [[lp, id, null]],
weight_version, and 0.5.23's weight_versions spans). Control endpoints answer {"success",
"message"} with 200 / 400.

Generation is a deterministic function of (prompt, sampling_seed, weight version), so tests can
predict it. Started on a checkpoint directory, it also reads the model's EOS ids (always a stop, unless
`ignore_eos`) and context length (a longer input + max_new_tokens is refused, 400) from its config.json,
as SGLang does. Each /generate stands alone, so a multi-turn episode is what SGLang sees too: a new
request per turn with the longer input_ids, logprobs for the new output tokens only. Knobs for
failures: `healthy`, `fail_updates`, `abort_next`, `reject_distributed`; for partial rollouts
`hold_after_tokens` keeps a batch in flight until a weight update (see StandinState). LoRA adapters
(/load_lora_adapter, /unload_lora_adapter, `lora_path` on /generate; `--enable-lora`): `state.lora`,
see rollout_sglang_standin_lora.py. Weight-update groups (recording only, or `--join-groups` to
really join the trainer's group as SGLang does): rollout_sglang_standin_groups.py.
Every call is logged in order in `calls`. Where SGLang's own request classes import (sglang_real_schema.py),
every payload is first checked against them and one real SGLang would refuse or misread is answered 400,
its problems kept in `schema_problems`. Runs in a thread (`StandinServer`) or as a process
(`python this.py --port P`). GET /standin/log returns calls and events; POST /standin/control sets knobs.
"""

from __future__ import annotations

import argparse
import json
import struct
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from rollout_sglang_standin_groups import destroy_group, init_group, update_distributed
from rollout_sglang_standin_lora import LoraState, adapter_shift
from sglang_real_schema import ENDPOINT_CLASSES, schema_problems, sglang_modules

VOCAB = 80  # below the tiny test tokenizer's size, so outputs decode


def predicted_tokens(input_ids: list[int], seed: int, version: int, count: int, shift: int = 0) -> list[int]:
    """`shift`: the serving LoRA adapter's (rollout_sglang_standin_lora.adapter_shift)."""
    base = sum(input_ids) + 31 * seed + 1000 * version + shift
    return [(base + 7 * k) % VOCAB for k in range(count)]


def predicted_logprob(position: int) -> float:
    return -0.1 - 0.01 * position


def read_safetensors_names(path: Path) -> list[str]:
    """Tensor names from a safetensors header (stdlib only: 8-byte length + JSON)."""
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    return sorted(name for name in header if name != "__metadata__")


def model_limits(model_path: str) -> tuple[set[int], int | None]:
    """EOS ids and context length from `model_path/config.json`, as SGLang reads them at start-up.

    A stand-in started on a name that is not a checkpoint directory has neither: it never stops on
    EOS and takes any length (what the single-turn tests predict).
    """
    config_file = Path(model_path) / "config.json"
    if not config_file.is_file():
        return set(), None
    config = json.loads(config_file.read_text())
    eos = config.get("eos_token_id")
    eos_ids = set(eos) if isinstance(eos, list) else ({eos} if isinstance(eos, int) else set())
    return eos_ids, config.get("max_position_embeddings")


class StandinState:
    def __init__(self, model_path: str = "standin-model") -> None:
        self.model_path = model_path
        self.eos_token_ids, self.context_length = model_limits(model_path)
        self.weight_version = "0"
        self.healthy = True
        self.fail_updates = False
        self.abort_next = 0  # abort this many upcoming sequences
        self.paused = False
        self.pause_mode = ""  # the mode of the last /pause_generation
        # Partial rollouts: with hold_after_tokens > 0 a /generate batch stops after that many tokens
        # per sequence (`held` set) until a weight update and /continue_generation, as an in-flight
        # request of SGLang's does when paused mid-decode; "abort" pauses end it with the tokens so far.
        self.hold_after_tokens = 0
        self.held = threading.Event()
        self.resumed = threading.Event()
        self.resumed.set()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.loaded_names: list[str] = []
        self.broadcast_done = threading.Event()
        self.lock = threading.Lock()
        self.tp_size = 1
        # --join-groups mode
        self.join_groups = False
        self.record_dir: Path | None = None
        self.pg_timeout = timedelta(seconds=60)
        self.groups: dict[str, Any] = {}
        self.reject_distributed: str | None = None  # refuse the next update (after receiving it)
        self.events: list[dict[str, Any]] = []  # ordered: request, received, recorded, refused, ...
        self.buckets_recorded = 0
        self.lora = LoraState()  # LoRA adapters (rollout_sglang_standin_lora.py)
        self.schema_problems: list[str] = []  # payloads SGLang's own classes refuse (when importable)

    def paths(self) -> list[str]:
        return [path for path, _ in self.calls]

    def event(self, kind: str, **details: Any) -> None:
        with self.lock:
            self.events.append({"kind": kind, "time": time.time(), **details})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: StandinState

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _read(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else {}

    def do_GET(self) -> None:
        state = self.state
        with state.lock:
            state.calls.append((self.path, {}))
        if self.path in ("/health", "/health_generate"):
            self._send(200 if state.healthy else 503, {} if state.healthy else {"error": "unhealthy"})
        elif self.path == "/get_model_info":
            self._send(200, {"model_path": state.model_path, "weight_version": state.weight_version})
        elif self.path == "/get_weight_version":
            self._send(200, {"weight_version": state.weight_version})
        elif self.path == "/get_server_info":
            self._send(
                200,
                {"model_path": state.model_path, "tp_size": state.tp_size, "dp_size": 1, "pp_size": 1},
            )
        elif self.path == "/standin/log":
            with state.lock:
                body = {"calls": state.calls, "events": state.events, "weight_version": state.weight_version}
                self._send(200, body)
        else:
            self._send(404, {"error": f"no route {self.path}"})

    def do_POST(self) -> None:
        state = self.state
        payload = self._read()
        with state.lock:
            state.calls.append((self.path, payload))
        checked = self.path in ENDPOINT_CLASSES and sglang_modules() is not None
        if checked and (problems := schema_problems(self.path, payload)):
            with state.lock:
                state.schema_problems.extend(problems)
            self._send(400, {"success": False, "message": "; ".join(problems)})
            return
        route = {
            "/generate": self._generate,
            "/pause_generation": self._pause,
            "/continue_generation": self._continue,
            "/update_weights_from_disk": self._update_from_disk,
            "/init_weights_update_group": lambda p: self._send(*init_group(state, p)),
            "/destroy_weights_update_group": lambda p: self._send(*destroy_group(state, p)),
            "/update_weights_from_distributed": lambda p: self._send(*update_distributed(state, p)),
            "/load_lora_adapter": lambda p: self._send(*state.lora.load(p)),
            "/unload_lora_adapter": lambda p: self._send(*state.lora.unload(p)),
            "/standin/control": self._control,
        }.get(self.path)
        if route is None:
            self._send(404, {"error": f"no route {self.path}"})
            return
        route(payload)

    def _control(self, payload: dict[str, Any]) -> None:
        state = self.state
        for key in ("reject_distributed", "healthy", "fail_updates", "hold_after_tokens"):
            if key in payload:
                setattr(state, key, payload[key])
        self._send(200, {})

    def _pause(self, payload: dict[str, Any]) -> None:
        if payload.get("mode") not in ("abort", "retract", "in_place"):
            self._send(400, {"error": f"bad mode {payload.get('mode')!r}"})
            return
        self.state.pause_mode = payload["mode"]
        self.state.paused = True
        self.state.resumed.clear()
        self._send(200, {})

    def _continue(self, payload: dict[str, Any]) -> None:
        self.state.paused = False
        self.state.resumed.set()
        self._send(200, {})

    def _update_from_disk(self, payload: dict[str, Any]) -> None:
        state = self.state
        required = {"model_path", "weight_version", "flush_cache", "abort_all_requests"}
        if missing := required - set(payload):
            self._send(400, {"success": False, "message": f"missing {sorted(missing)}"})
            return
        if state.fail_updates:
            self._send(400, {"success": False, "message": "Failed to update weights: shape mismatch"})
            return
        model_path = Path(payload["model_path"])
        files = sorted(model_path.glob("*.safetensors")) if model_path.is_dir() else []
        if not files:
            self._send(400, {"success": False, "message": f"no safetensors in {model_path}"})
            return
        state.loaded_names = [n for f in files for n in read_safetensors_names(f)]
        state.weight_version = str(payload["weight_version"])
        self._send(200, {"success": True, "message": "Succeeded to update model weights."})

    def _generate(self, payload: dict[str, Any]) -> None:
        state = self.state
        state.resumed.wait(timeout=10)
        if not (payload.get("return_logprob") is True and payload.get("logprob_start_len") == -1):
            self._send(400, {"error": "this stand-in expects return_logprob and logprob_start_len -1"})
            return
        inputs = payload["input_ids"]
        batched = isinstance(inputs[0], list)
        inputs = inputs if batched else [inputs]
        params = payload["sampling_params"]
        params = params if isinstance(params, list) else [params] * len(inputs)
        if "seed" in params[0]:
            self._send(400, {"error": "unknown sampling param 'seed' (SGLang uses sampling_seed)"})
            return
        refusal = next((r for r in map(sampling_refusal, params) if r), None)
        if refusal:  # SGLang's SamplingParams.verify answers 400 with its message
            self._send(400, {"error": refusal})
            return
        limit = self.state.context_length
        for ids, p in zip(inputs, params, strict=True):
            if limit is not None and len(ids) + int(p["max_new_tokens"]) > limit:
                # SGLang refuses the whole request with 400 (its own wording differs)
                total = len(ids) + int(p["max_new_tokens"])
                message = f"requested {total} tokens, above the model's context length of {limit}"
                self._send(400, {"error": message})
                return
        adapters = self.state.lora.requested(payload, len(inputs))
        if isinstance(adapters, str):
            self._send(400, {"error": adapters})
            return
        first = state.weight_version
        held = state.hold_after_tokens
        if held and all(held < int(p["max_new_tokens"]) for p in params):
            spans = self._held_across_an_update(first, held)
        else:
            spans = [(first, None)]
        outputs = [self._one(ids, p, a, spans) for ids, p, a in zip(inputs, params, adapters, strict=True)]
        self._send(200, outputs if batched else outputs[0])

    def _held_across_an_update(self, first: str, held: int) -> list[tuple[str, int | None]]:
        """Wait, `held` tokens into the batch, for an update and /continue_generation; the versions
        that sample the batch's tokens: [(version, first token)...]; an abort pause ends it there."""
        state = self.state
        state.held.set()
        deadline = time.monotonic() + 30
        while state.weight_version == first or state.paused:
            if time.monotonic() > deadline:
                return [(first, None)]  # no update came: finish on the old weights
            if state.paused and state.pause_mode == "abort":
                return [(first, None), ("abort", held)]
            time.sleep(0.005)
        state.held.clear()
        return [(first, None), (state.weight_version, held)]

    def _one(
        self,
        input_ids: list[int],
        params: dict[str, Any],
        adapter: str | None,
        spans: list[tuple[str, int | None]],
    ) -> dict[str, Any]:
        """`spans`: the batch's versions by first token; the tokens after a switch are what the new
        version predicts from the input so far (a retract recomputes the KV under the new weights)."""
        state = self.state
        max_new = int(params["max_new_tokens"])
        seed = int(params.get("sampling_seed", 0))
        shift = adapter_shift(adapter)
        tokens: list[int] = []
        token_versions: list[str] = []
        for index, (name, _) in enumerate(spans):
            if name == "abort":
                break
            end = spans[index + 1][1] if index + 1 < len(spans) else max_new
            version = int(name) if name.isdigit() else 0
            new = predicted_tokens(input_ids + tokens, seed, version, end - len(tokens), shift)
            tokens += new
            token_versions += [name] * len(new)
        finish: dict[str, Any] = {"type": "length", "length": max_new}
        if spans[-1][0] == "abort":
            finish = {"type": "abort", "message": "Abort in waiting queue."}
        stops = set(params.get("stop_token_ids") or [])
        if not params.get("ignore_eos"):
            stops |= state.eos_token_ids  # SGLang always stops on the model's EOS
        for k, token in enumerate(tokens):
            if token in stops:
                tokens = tokens[: k + 1]
                finish = {"type": "stop", "matched": token}
                break
        token_versions = token_versions[: len(tokens)]
        with state.lock:
            abort = state.abort_next > 0
            state.abort_next -= int(abort)
        if abort:
            tokens = tokens[: max(1, len(tokens) // 2)]
            token_versions = token_versions[: len(tokens)]
            finish = {"type": "abort", "message": "Abort before weight update."}
        spans_out = weight_version_spans(token_versions) or [
            {"version": state.weight_version, "start": 0, "end": 0}
        ]
        return {
            "text": "",
            "output_ids": tokens,
            "meta_info": {
                "id": "rid",
                "finish_reason": finish,
                "prompt_tokens": len(input_ids),
                "completion_tokens": len(tokens),
                "cached_tokens": 0,
                # SGLang 0.5.23 (utils/weight_versions.py): the spans of versions over the output
                # tokens, and weight_version = the newest span's
                "weight_versions": spans_out,
                "weight_version": spans_out[-1]["version"],
                "output_token_logprobs": [[predicted_logprob(k), t, None] for k, t in enumerate(tokens)],
            },
        }


def weight_version_spans(token_versions: list[str]) -> list[dict[str, Any]]:
    """[v, v, w] -> [{"version": v, "start": 0, "end": 2}, {"version": w, "start": 2, "end": 3}]."""
    spans: list[dict[str, Any]] = []
    for position, version in enumerate(token_versions):
        if spans and spans[-1]["version"] == version:
            spans[-1]["end"] = position + 1
        else:
            spans.append({"version": version, "start": position, "end": position + 1})
    return spans


def sampling_refusal(params: dict[str, Any]) -> str | None:
    """SGLang's SamplingParams.verify for the float fields: what it refuses, with its wording."""
    temperature = float(params.get("temperature", 1.0))
    top_p = float(params.get("top_p", 1.0))
    if not temperature >= 0.0:  # NaN fails this too
        return f"temperature must be non-negative, got {temperature}."
    if not 0.0 < top_p <= 1.0:
        return f"top_p must be in (0, 1], got {top_p}."
    return None


class StandinServer:
    """The stand-in on a loopback port in a daemon thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, model_path: str = "standin-model") -> None:
        sglang_modules()  # import SGLang's classes (if present) before serving, not inside the first call
        self.state = StandinState(model_path)
        handler = type("BoundHandler", (Handler,), {"state": self.state})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> StandinServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def main() -> None:
    """`python -m sglang.launch_server`-compatible flags (the ones grpo-rollout passes)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=30000)
    parser.add_argument("--weight-version", default="default")
    parser.add_argument("--tp-size", type=int, default=1)
    parser.add_argument("--dp-size", type=int, default=1)
    parser.add_argument("--mem-fraction-static", type=float)
    parser.add_argument("--skip-server-warmup", action="store_true")
    parser.add_argument("--random-seed", type=int)
    parser.add_argument("--join-groups", action="store_true", help="really join weight-update groups")
    parser.add_argument("--record-dir", type=Path, help="write each received bucket here")
    parser.add_argument("--pg-timeout-s", type=float, default=60.0)
    parser.add_argument("--enable-lora", action="store_true")
    parser.add_argument("--max-lora-rank", type=int)
    parser.add_argument("--lora-target-modules", nargs="+")
    args = parser.parse_args()
    server = StandinServer(args.host, args.port, args.model_path)
    state = server.state
    state.weight_version = args.weight_version
    state.tp_size = args.tp_size
    state.join_groups = args.join_groups
    state.record_dir = args.record_dir
    state.pg_timeout = timedelta(seconds=args.pg_timeout_s)
    state.lora = LoraState(args.enable_lora, args.max_lora_rank, args.lora_target_modules)
    if args.join_groups:
        import torch

        torch.set_num_threads(1)
    server._server.serve_forever()


if __name__ == "__main__":
    main()
