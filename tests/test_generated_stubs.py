"""The committed stubs in packages/common/src/grpo/v1 are exactly what proto/generate.py produces.

Fails when a .proto file changed without `uv run python proto/generate.py`, or when someone edited
generated code by hand.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "packages" / "common" / "src" / "grpo"


def _generate_module():
    spec = importlib.util.spec_from_file_location("grpo_proto_generate", ROOT / "proto" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_committed_stubs_match_a_fresh_generation(tmp_path) -> None:
    _generate_module().generate(tmp_path)
    fresh, committed = _files(tmp_path / "grpo"), _files(COMMITTED)
    assert fresh, "proto/generate.py produced nothing"
    assert sorted(fresh) == sorted(committed), (
        "stub files added or removed: run `uv run python proto/generate.py`"
    )
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated stubs {stale}: run `uv run python proto/generate.py` and commit"
