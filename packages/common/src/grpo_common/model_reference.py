"""What a user names as a model: a checkpoint directory or a Hugging Face hub id, told apart up front.

transformers takes any string it cannot open as a hub id: a mistyped path comes back as "Repo id must
use alphanumeric chars" after the services have started, and a file name (`--model data.jsonl`) sends
a request to the hub. A name that is a path (it exists, or it is absolute or starts with `.` or `~`)
must be a checkpoint directory; anything else must be spelt like a hub id (`org/name`).
"""

from __future__ import annotations

import re
from pathlib import Path

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")
CHECKPOINT_FILES = ("config.json", "adapter_config.json")


def check_model_reference(name: str, setting: str = "model") -> str:
    """`name` unchanged when it can be a model; ValueError saying what it is instead."""
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{setting} {name!r} is a file; name a checkpoint directory or a hub id")
        if not any((path / file).is_file() for file in CHECKPOINT_FILES):
            raise ValueError(
                f"{setting} {name!r} is a directory without config.json: not a Hugging Face checkpoint"
            )
        return name
    if name.startswith((".", "~", "/")):
        raise ValueError(f"{setting} {name!r}: no such directory")
    if not HUB_ID.match(name) or name.endswith((".", "-")):
        raise ValueError(f"{setting} {name!r} is neither a checkpoint directory here nor a hub id (org/name)")
    return name
