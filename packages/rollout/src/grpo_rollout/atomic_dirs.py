"""Write a directory in full or not at all: an SGLang server must never read a half-written one."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path


def replace_directory(directory: Path, fill: Callable[[Path], None]) -> None:
    """`fill` a fresh sibling `NAME.partial`, then rename it to `directory` (replacing any old one)."""
    tmp = directory.with_name(directory.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    fill(tmp)
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)
