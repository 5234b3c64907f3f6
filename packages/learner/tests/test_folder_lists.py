"""A folder's `__init__` that lists its modules lists each of them, and nothing that is not there.

The lists are how a newcomer finds a module from `ls` (docs/architecture.md names the folders, each
folder's docstring its modules); a hand-written list drifts when a module is added, renamed or moved,
so it is checked against the folder itself. Read from the source, nothing imported.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import grpo_learner

PACKAGE = Path(grpo_learner.__file__).parent
# an indented or flush-left line "name   what it is" or "name.py   what it is" (two spaces or more)
ENTRY = re.compile(r"^\s*([a-z_][a-z0-9_]*)(?:\.py)?\s{2,}\S", re.MULTILINE)


def listed_modules(source: str) -> set[str]:
    """The module names a package's docstring lists (`source`: its `__init__.py`)."""
    return set(ENTRY.findall(ast.get_docstring(ast.parse(source)) or ""))


def test_every_module_list_in_a_folder_docstring_matches_the_folder() -> None:
    folders = [init.parent for init in sorted(PACKAGE.glob("*/__init__.py"))]
    checked = {}
    for folder in folders:
        listed = listed_modules((folder / "__init__.py").read_text())
        if listed:
            checked[folder.name] = (listed, {p.stem for p in folder.glob("*.py")} - {"__init__"})
    assert {"grpo", "training", "data", "monitoring", "local", "eval", "lora"} <= checked.keys()
    assert {name: lists for name, lists in checked.items() if lists[0] != lists[1]} == {}


def test_the_list_reader_sees_both_styles_and_ignores_prose() -> None:
    init = '"""What it is.\n\n    adapters.py   wrap\nrunner   one evaluation\nSome prose here.\n"""\n'
    assert listed_modules(init) == {"adapters", "runner"}
