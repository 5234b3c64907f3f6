"""Each package installs alone with only its own dependencies: the reward service never pulls torch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _lock_packages() -> dict[str, list[dict]]:
    """uv.lock's packages by name (a name can appear once per resolved version)."""
    by_name: dict[str, list[dict]] = {}
    for package in tomllib.loads((ROOT / "uv.lock").read_text())["package"]:
        by_name.setdefault(package["name"], []).append(package)
    return by_name


def _closure(root: str, extras: Iterable[str] = ()) -> set[str]:
    """Every package `root[extras]` installs according to uv.lock (dev groups are not installed)."""
    packages = _lock_packages()
    seen: set[tuple[str, str | None]] = set()
    todo: list[tuple[str, str | None]] = [(root, None), *((root, extra) for extra in extras)]
    while todo:
        name, extra = todo.pop()
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        for package in packages.get(name, []):
            deps = (
                package.get("dependencies", []) if extra is None else package.get("optional-dependencies", {})
            )
            for dep in deps if extra is None else deps.get(extra, []):
                todo.append((dep["name"], None))
                todo.extend((dep["name"], wanted) for wanted in dep.get("extra", []))
    return {name for name, _ in seen}


def test_reward_package_does_not_depend_on_torch() -> None:
    declared = tomllib.loads((ROOT / "packages/reward/pyproject.toml").read_text())["project"]
    assert not any("torch" in dep for dep in declared["dependencies"])
    assert not any("tensors" in dep for dep in declared["dependencies"]), "grpo-common[tensors] pulls torch"
    installed = _closure("grpo-reward")
    assert {"grpo-common", "grpcio", "protobuf", "sympy"} <= installed
    assert not installed & {"torch", "numpy", "transformers", "triton"}, sorted(installed)


def test_the_lock_walk_does_find_torch_where_it_belongs() -> None:
    # The check above could pass vacuously if the walk were broken; torch must show up here.
    assert "torch" in _closure("grpo-common", extras=["tensors"])
    assert "torch" not in _closure("grpo-common")
    assert "torch" in _closure("grpo-rollout") and "torch" in _closure("grpo-learner")
    assert "sglang" not in _closure("grpo-rollout") and "sglang" in _closure(
        "grpo-rollout", extras=["sglang"]
    )


def test_grpo_common_server_side_imports_without_torch() -> None:
    code = (
        "import sys, grpo_common.server, grpo_common.channel, grpo_common.config, grpo_common.logging_setup;"
        "from grpo.v1 import reward_pb2_grpc, rollout_pb2;"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_grpo_common_wheel_ships_the_library_and_the_generated_stubs(tmp_path) -> None:
    uv = os.environ.get("UV") or shutil.which("uv")
    assert uv, "uv is needed to build the wheel: run the tests with `uv run pytest`"
    subprocess.run(
        [uv, "build", "--package", "grpo-common", "--wheel", "--out-dir", str(tmp_path)],
        cwd=ROOT, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("grpo_common-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "grpo_common/server.py",
        "grpo_common/weights/codec.py",
        "grpo_common/py.typed",
        "grpo/v1/rollout_pb2.py",
        "grpo/v1/rollout_pb2.pyi",
        "grpo/v1/rollout_pb2_grpc.py",
        "grpo/v1/reward_pb2_grpc.py",
    ):
        assert expected in names, f"{expected} missing from {wheel.name}"
