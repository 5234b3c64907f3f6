"""Fixtures shared by the cross-package tests in this folder.

Why fixtures: pytest runs in importlib mode (pyproject.toml), so a helper module here cannot be
imported by name from a test; a fixture in this conftest is how the tests share one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="session")
def install_example() -> Callable[[str, Path], Path]:
    """`install_example(name, target)`: examples/<name> installed into the folder `target`; returns it.

    `uv pip install --offline --target`, so the package is found only by a process whose
    PYTHONPATH names `target` (a test can show it is missing elsewhere).
    """

    def install(name: str, target: Path) -> Path:
        uv = os.environ.get("UV") or shutil.which("uv")  # `uv run` names itself in $UV
        assert uv is not None, f"this test installs examples/{name} with uv; run it under `uv run`"
        subprocess.run(
            [uv, "pip", "install", "--offline", "--quiet", "--target", str(target), str(EXAMPLES / name)],
            check=True, timeout=120,
        )  # fmt: skip
        return target

    return install
