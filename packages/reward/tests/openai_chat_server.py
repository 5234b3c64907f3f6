"""A real HTTP server speaking OpenAI's chat-completions API over a tiny real transformers model.

It stands in for the vLLM or SGLang server an operator points a judge at (neither runs here): the
same route (`POST /v1/chat/completions`), request fields (`model`, `messages`, `max_tokens`,
`temperature`) and reply shape (`choices[0].message.content`, `usage`). The model is a tiny causal LM
built from a config over a digits-only tokenizer, so whatever it generates greedily is a number: with
`max_tokens = 1` one digit (a score in 0-9), with more a longer number. `delay_s` makes it answer
late (a judge that times out); `fail_first` answers that many requests with HTTP 503 first (retries).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen2Config

DIGITS = "0123456789"


def digits_model(seed: int = 0) -> tuple[Any, PreTrainedTokenizerFast]:
    """A ~50k-parameter Qwen2 LM whose vocabulary is the ten digits (and pad/eos/unk), and its tokenizer."""
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{d: 3 + i for i, d in enumerate(DIGITS)}}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    config = Qwen2Config(
        vocab_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=4096, eos_token_id=1, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).eval(), tokenizer


class ChatCompletions:
    """The model behind the route: messages -> one greedy completion of exactly max_tokens tokens."""

    def __init__(self, model: Any, tokenizer: PreTrainedTokenizerFast) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.requests = 0  # answered by the model
        self.received = 0  # every POST, answered or not
        self.in_flight = 0
        self.most_in_flight = 0  # the largest number of requests the server held at once
        self._lock = threading.Lock()
        self._count = threading.Lock()

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        text = "\n".join(str(m.get("content", "")) for m in body["messages"])
        ids = self.tokenizer(text[-2000:], return_tensors="pt").input_ids
        new = int(body.get("max_tokens", 16))
        with self._lock, torch.inference_mode():
            self.requests += 1
            out = self.model.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new,
                do_sample=False, pad_token_id=0,
            )  # fmt: skip
        content = self.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        return {
            "id": f"chatcmpl-{self.requests}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "digits"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "length"}
            ],
            "usage": {
                "prompt_tokens": ids.shape[1],
                "completion_tokens": new,
                "total_tokens": ids.shape[1] + new,
            },
        }


@contextmanager
def chat_server(
    delay_s: float = 0.0, fail_first: int = 0, seed: int = 0
) -> Iterator[tuple[str, ChatCompletions]]:
    """Serve on a free loopback port; yields (base URL ending in /v1, the route's state)."""
    model, tokenizer = digits_model(seed)
    route = ChatCompletions(model, tokenizer)
    failures = {"left": fail_first}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a client that gave up
                self.wfile.write(data)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            with route._count:
                route.received += 1
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            if failures["left"] > 0:
                failures["left"] -= 1
                self._send(503, {"error": {"message": "overloaded, try again"}})
                return
            with route._count:
                route.in_flight += 1
                route.most_in_flight = max(route.most_in_flight, route.in_flight)
            try:
                time.sleep(delay_s)
                reply = route.complete(body)
            finally:
                with route._count:
                    route.in_flight -= 1
            self._send(200, reply)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True  # idle keep-alive handlers must not block the close
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", route
    finally:
        server.shutdown()
        deadline = time.monotonic() + 30
        while route.in_flight and time.monotonic() < deadline:  # none may be left inside torch at exit
            time.sleep(0.05)
        server.server_close()
