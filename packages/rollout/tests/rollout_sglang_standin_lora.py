"""The stand-in's LoRA adapters: /load_lora_adapter, /unload_lora_adapter and `lora_path` on /generate.

As SGLang 0.5.x (`tokenizer_manager.load_lora_adapter`, `lora/lora_manager.py`, `lora_registry.py`):
- loading needs the server started with `--enable-lora`; it reads `lora_path` as a peft directory
  (`adapter_config.json` with `r`, `lora_alpha`, `target_modules`, and `adapter_model.safetensors`)
  and refuses a missing or malformed one, a name already loaded, a rank above `--max-lora-rank`
  or target modules outside `--lora-target-modules` (when given). Replies are
  `{"success", "error_message", "loaded_adapters"}` with 200 / 400.
- /generate with `lora_path` (a name, or one per sequence; null = the base model) refuses a name
  that is not loaded (400, SGLang's "The following requested LoRA adapters are not loaded" wording).

What a test observes: `LoraState.loaded` (name -> the directory's config and tensors, read back from
disk), and generation depends on the adapter (`adapter_shift`), so the served tokens show which
adapter produced them.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PEFT_TENSOR_PREFIX = "base_model.model."


@dataclass
class LoadedLora:
    path: str
    config: dict[str, Any]
    tensors: dict[str, Any]  # name -> torch.Tensor, read from adapter_model.safetensors


@dataclass
class LoraState:
    enabled: bool = False  # --enable-lora
    max_rank: int | None = None  # --max-lora-rank
    target_modules: list[str] | None = None  # --lora-target-modules
    loaded: dict[str, LoadedLora] = field(default_factory=dict)

    def reply(self, success: bool, error: str | None = None) -> tuple[int, dict[str, Any]]:
        adapters = {name: lora.path for name, lora in self.loaded.items()}
        body = {"success": success, "error_message": error, "loaded_adapters": adapters}
        return (200 if success else 400), body

    def load(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not self.enabled:
            return self.reply(False, "LoRA is not enabled. Please set `--enable-lora` to enable LoRA.")
        name, path = payload.get("lora_name"), payload.get("lora_path")
        if not name or not path:
            return self.reply(False, "lora_name and lora_path are required")
        if name in self.loaded:
            return self.reply(False, f"Failed to load LoRA adapter {name} because it is already loaded")
        try:
            lora = read_peft_dir(Path(path))
        except ValueError as exc:
            return self.reply(False, f"Failed to load LoRA adapter {name}: {exc}")
        rank, modules = lora.config["r"], set(lora.config["target_modules"])
        allowed = set(self.target_modules) if self.target_modules else None
        if (self.max_rank is not None and rank > self.max_rank) or (allowed and not modules <= allowed):
            return self.reply(
                False,
                f"LoRA adapter {name} with rank {rank} is incompatible with the current LoRA memory pool "
                "configuration. Please ensure that the LoRA adapter's rank is within the configured "
                "`--max-lora-rank` and that the target modules are included in `--lora-target-modules`.",
            )
        self.loaded[name] = lora
        return self.reply(True)

    def unload(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        name = payload.get("lora_name")
        if name not in self.loaded:
            return self.reply(False, f"LoRA adapter {name} is not loaded")
        del self.loaded[name]
        return self.reply(True)

    def requested(self, payload: dict[str, Any], count: int) -> list[str | None] | str:
        """Per-sequence adapter names of a /generate payload, or SGLang's refusal message."""
        paths = payload.get("lora_path")
        names = paths if isinstance(paths, list) else [paths] * count
        if len(names) != count:
            return f"lora_path has {len(names)} entries for {count} inputs"
        if any(names) and not self.enabled:
            return "LoRA is not enabled. Please set `--enable-lora` to enable LoRA."
        for name in names:
            if name is not None and name not in self.loaded:
                return (
                    f"The following requested LoRA adapters are not loaded: {name}\n"
                    f"Loaded adapters: {self.loaded.keys()}."
                )
        return names


def adapter_shift(name: str | None) -> int:
    """How an adapter changes the stand-in's generation (0 for the base model)."""
    return 0 if name is None else zlib.crc32(name.encode()) % 997 + 1


def read_peft_dir(path: Path) -> LoadedLora:
    """A peft adapter directory as SGLang reads it; ValueError says what is missing or malformed."""
    config_file, weights_file = path / "adapter_config.json", path / "adapter_model.safetensors"
    if not config_file.is_file():
        raise ValueError(f"{config_file} not found")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{config_file} is not JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{config_file} is not a JSON object")
    for key, kind in (("r", int), ("lora_alpha", (int, float)), ("target_modules", list)):
        if not isinstance(config.get(key), kind):
            raise ValueError(f"{config_file}: {key} missing or not a {kind}")
    if config.get("peft_type") != "LORA":
        raise ValueError(f"{config_file}: peft_type {config.get('peft_type')!r} is not LORA")
    if not weights_file.is_file():
        raise ValueError(f"{weights_file} not found")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(weights_file))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{weights_file} is not a safetensors file: {exc}") from None
    targets = set(config["target_modules"])
    for name, tensor in tensors.items():
        module, _, which = name.removesuffix(".weight").rpartition(".")
        if not name.startswith(PEFT_TENSOR_PREFIX) or which not in ("lora_A", "lora_B"):
            raise ValueError(f"{weights_file}: {name!r} is not a peft LoRA tensor name")
        if module.rpartition(".")[2] not in targets:
            raise ValueError(f"{weights_file}: {name!r} is outside target_modules {sorted(targets)}")
        rank_dim = tensor.shape[0] if which == "lora_A" else tensor.shape[1]
        if tensor.dim() != 2 or rank_dim != config["r"]:
            raise ValueError(f"{weights_file}: {name!r} has shape {list(tensor.shape)} for r={config['r']}")
    return LoadedLora(str(path), config, tensors)
