"""Every public class name is defined once across the packages, so a name says which class it is
(there were two `RolloutConfig`s, two `SamplingConfig`s and two `EpisodeStats`)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_two_public_classes_share_a_name() -> None:
    homes: defaultdict[str, list[str]] = defaultdict(list)
    for path in ROOT.glob("packages/*/src/**/*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                homes[node.name].append(str(path.relative_to(ROOT)))
    assert len(homes) > 100  # the scan sees the classes
    assert {name: paths for name, paths in homes.items() if len(paths) > 1} == {}
