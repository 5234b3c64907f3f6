"""A typed client of one SGLang HTTP server's native API (no OpenAI routes).

Endpoints and payloads follow SGLang 0.5.x (`python/sglang/srt/entrypoints/http_server.py`,
`managers/io_struct.py`); see docs/sglang-api facts in the project notes. Control endpoints answer
`{"success": bool, "message": str}` with HTTP 200 or 400; every failure becomes an SGLangError
that names the server, the endpoint and SGLang's own message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, Literal

import httpx

logger = logging.getLogger(__name__)

PauseMode = Literal["abort", "retract", "in_place"]


class SGLangError(RuntimeError):
    """An SGLang server could not be reached or refused a call."""


class SGLangRefused(SGLangError):
    """The server answered a control call with success false (SGLang's message is in the error)."""


class SGLangServer:
    """One SGLang server (a worker, or a router for /generate only)."""

    def __init__(self, url: str, client: httpx.AsyncClient, timeout_s: float = 600.0) -> None:
        self.url = url.rstrip("/")
        self._client = client
        self._timeout = timeout_s

    def __repr__(self) -> str:
        return f"SGLangServer({self.url})"

    async def _request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> httpx.Response:
        try:
            return await self._client.request(method, self.url + path, json=payload, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise SGLangError(
                f"cannot reach SGLang at {self.url}{path}: {type(exc).__name__}: {exc}; is the server up?"
            ) from exc

    async def _control(self, path: str, payload: dict[str, Any]) -> str:
        """POST a control call; return SGLang's message, raise unless it says success."""
        response = await self._request("POST", path, payload)
        try:
            body = response.json()
        except ValueError:
            body = {"success": response.is_success, "message": response.text}
        success = bool(body.get("success", response.is_success)) if isinstance(body, dict) else False
        # LoRA calls answer {"success", "error_message", "loaded_adapters"} instead of "message"
        if isinstance(body, dict):
            message = str(body.get("message") or body.get("error_message") or "")
        else:
            message = str(body)
        if response.status_code != 200 or not success:
            raise SGLangRefused(f"{self.url}{path} failed (HTTP {response.status_code}): {message or body}")
        return message

    async def _post_plain(self, path: str, payload: dict[str, Any] | None = None) -> None:
        response = await self._request("POST", path, payload)
        if response.status_code != 200:
            raise SGLangError(f"{self.url}{path} failed (HTTP {response.status_code}): {response.text}")

    # --- generation -------------------------------------------------------------------------
    async def generate(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        """POST /generate; always returns a list of per-sequence outputs."""
        response = await self._request("POST", "/generate", payload)
        if response.status_code != 200:
            raise SGLangError(f"{self.url}/generate failed (HTTP {response.status_code}): {response.text}")
        body = response.json()
        return body if isinstance(body, list) else [body]

    # --- health and info --------------------------------------------------------------------
    async def healthy(self) -> bool:
        try:
            response = await self._client.get(self.url + "/health", timeout=10.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def wait_healthy(self, timeout_s: float, poll_s: float = 1.0, still_alive=None) -> None:
        """Poll /health until 200; `still_alive()` returning False (a dead child) stops early."""
        deadline = time.monotonic() + timeout_s
        while not await self.healthy():
            if still_alive is not None and not still_alive():
                raise SGLangError(f"SGLang at {self.url} exited before becoming healthy; see its log")
            if time.monotonic() > deadline:
                raise SGLangError(
                    f"SGLang at {self.url} not healthy after {timeout_s:.0f} s (GET /health != 200); "
                    "check that it is running and has finished loading the model"
                )
            await asyncio.sleep(poll_s)

    async def model_info(self) -> dict[str, Any]:
        response = await self._request("GET", "/get_model_info")
        if response.status_code != 200:
            raise SGLangError(f"{self.url}/get_model_info failed (HTTP {response.status_code})")
        return response.json()

    async def server_info(self) -> dict[str, Any]:
        """GET /get_server_info: the server args (tp_size, dp_size, ...) and scheduler facts."""
        response = await self._request("GET", "/get_server_info")
        if response.status_code != 200:
            raise SGLangError(f"{self.url}/get_server_info failed (HTTP {response.status_code})")
        return response.json()

    # --- weight updates -----------------------------------------------------------------------
    async def pause_generation(self, mode: PauseMode) -> None:
        await self._post_plain("/pause_generation", {"mode": mode})

    async def continue_generation(self) -> None:
        await self._post_plain("/continue_generation", {})

    async def update_weights_from_disk(self, model_path: str, weight_version: str) -> str:
        return await self._control(
            "/update_weights_from_disk",
            {
                "model_path": model_path,
                "load_format": None,
                "flush_cache": True,
                "abort_all_requests": False,
                "weight_version": weight_version,
            },
        )

    async def init_weights_update_group(
        self,
        master_address: str,
        master_port: int,
        rank_offset: int,
        world_size: int,
        group_name: str = "weight_update_group",
        backend: str = "nccl",
    ) -> str:
        return await self._control(
            "/init_weights_update_group",
            {
                "master_address": master_address,
                "master_port": master_port,
                "rank_offset": rank_offset,
                "world_size": world_size,
                "group_name": group_name,
                "backend": backend,
            },
        )

    async def update_weights_from_distributed(
        self,
        names: Sequence[str],
        dtypes: Sequence[str],
        shapes: Sequence[Sequence[int]],
        weight_version: str | None,
        group_name: str = "weight_update_group",
        flush_cache: bool = True,
    ) -> str:
        """Receive one bucket from the group's broadcast; SGLang answers after it has loaded it.

        `weight_version` None leaves the server's version alone (SGLang sets it only when given and
        only on success), so the buckets before the last of a multi-bucket update pass None.
        """
        payload: dict[str, Any] = {
            "names": list(names),
            "dtypes": list(dtypes),
            "shapes": [list(s) for s in shapes],
            "group_name": group_name,
            "flush_cache": flush_cache,
            "abort_all_requests": False,
        }
        if weight_version is not None:
            payload["weight_version"] = weight_version
        return await self._control("/update_weights_from_distributed", payload)

    async def destroy_weights_update_group(self, group_name: str = "weight_update_group") -> str:
        return await self._control("/destroy_weights_update_group", {"group_name": group_name})

    # --- LoRA adapters (the server needs --enable-lora) ---------------------------------------
    async def load_lora_adapter(self, lora_name: str, lora_path: str) -> str:
        """Load a peft adapter directory under `lora_name`; /generate then takes `lora_path: name`."""
        return await self._control("/load_lora_adapter", {"lora_name": lora_name, "lora_path": lora_path})

    async def unload_lora_adapter(self, lora_name: str) -> str:
        return await self._control("/unload_lora_adapter", {"lora_name": lora_name})
