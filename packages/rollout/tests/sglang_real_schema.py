"""Check a payload grpo-rollout sends to SGLang against SGLang's own request classes.

SGLang cannot run here (it needs a GPU), but its request classes (`sglang.srt.managers.io_struct`,
`sglang.srt.sampling.sampling_params`) import on a CPU once its pure-Python dependencies are on the path
(`packages/rollout/sglang-schema.txt`, installed with `--no-deps`, see the rollout README). When they import,
the SGLang stand-in refuses every payload that real SGLang would refuse or silently misread, so every
stand-in test doubles as a schema test, and `test_sglang_real_schema.py` drives each endpoint once.

A payload is checked the way SGLang's HTTP server reads it: FastAPI validates the JSON body with pydantic
against the endpoint's class (`GenerateReqInput` is a dataclass, the control requests are msgspec structs
with a pydantic schema); /generate then normalises the batch and builds, normalises and verifies one
`SamplingParams` per sequence, as the tokenizer manager does. Stricter than SGLang in one way, on purpose:
SGLang *ignores* keys it does not know (pydantic's `extra="ignore"`), so a misspelt key (`seed` for
`sampling_seed`) would silently do nothing; here it is a problem.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from functools import cache
from types import ModuleType
from typing import Any

# The endpoint -> the io_struct class SGLang's http_server.py declares as its body.
ENDPOINT_CLASSES = {
    "/generate": "GenerateReqInput",
    "/pause_generation": "PauseGenerationReqInput",
    "/continue_generation": "ContinueGenerationReqInput",
    "/update_weights_from_disk": "UpdateWeightFromDiskReqInput",
    "/init_weights_update_group": "InitWeightsUpdateGroupReqInput",
    "/update_weights_from_distributed": "UpdateWeightsFromDistributedReqInput",
    "/destroy_weights_update_group": "DestroyWeightsUpdateGroupReqInput",
    "/load_lora_adapter": "LoadLoRAAdapterReqInput",
    "/unload_lora_adapter": "UnloadLoRAAdapterReqInput",
}

# /generate's SamplingParams.verify needs the model's vocabulary; the stand-in's is smaller than this.
VOCAB_SIZE = 151_936


@cache
def sglang_modules() -> tuple[ModuleType, ModuleType] | None:
    """(io_struct, sampling_params) when SGLang's request classes import here, else None."""
    try:
        io_struct = importlib.import_module("sglang.srt.managers.io_struct")
        sampling = importlib.import_module("sglang.srt.sampling.sampling_params")
    except ImportError:
        return None
    return io_struct, sampling


def field_names(cls: type) -> set[str]:
    """The keys SGLang reads from a body of this class (dataclass fields or msgspec struct fields)."""
    if dataclasses.is_dataclass(cls):
        return {f.name for f in dataclasses.fields(cls)}
    return set(cls.__struct_fields__)


def schema_problems(path: str, payload: dict[str, Any]) -> list[str]:
    """What real SGLang would refuse or ignore in `payload` POSTed to `path`; [] when it is fine.

    Raises RuntimeError when SGLang's classes are not importable: call `sglang_modules()` first.
    """
    modules = sglang_modules()
    if modules is None:
        raise RuntimeError("SGLang's request classes are not importable; see packages/rollout/README.md")
    io_struct, sampling = modules
    if path not in ENDPOINT_CLASSES:
        return [f"{path} is not an SGLang endpoint grpo-rollout is known to call"]
    cls = getattr(io_struct, ENDPOINT_CLASSES[path])
    problems = [
        f"{path}: SGLang's {cls.__name__} has no field {key!r} (SGLang would silently ignore it)"
        for key in sorted(set(payload) - field_names(cls))
    ]
    import pydantic  # SGLang's server validates with pydantic; a dependency of SGLang, not of the stand-in

    try:
        body = pydantic.TypeAdapter(cls).validate_json(json.dumps(payload))
    except pydantic.ValidationError as exc:
        return [*problems, f"{path}: {cls.__name__} refuses the body: {exc}"]
    if path == "/generate":
        problems += _generate_problems(body, sampling.SamplingParams)
    return problems


def _generate_problems(request: Any, sampling_params_class: type) -> list[str]:
    """Normalise the batch and check each sequence's sampling params as SGLang's tokenizer manager does."""
    try:
        request.normalize_batch_and_arguments()
    except (ValueError, TypeError) as exc:
        return [f"/generate: GenerateReqInput.normalize_batch_and_arguments refuses it: {exc}"]
    sequences = [request] if request.is_single else [request[i] for i in range(request.batch_size)]
    problems = []
    for i, sequence in enumerate(sequences):
        params = dict(sequence.sampling_params or {})
        unknown = sorted(set(params) - set(sampling_params_class.__struct_fields__))
        problems += [f"/generate: sampling_params[{i}] has no field {key!r}" for key in unknown]
        try:
            built = sampling_params_class(**{k: v for k, v in params.items() if k not in unknown})
            built.normalize(None)
            built.verify(VOCAB_SIZE)
        except (ValueError, TypeError) as exc:
            problems.append(f"/generate: SamplingParams of sequence {i} refused: {exc}")
    return problems
