"""An example reward task: shorter completions score higher.

The reward service calls it in a killable worker process under the per-item time limit, with the
dataset row's extra columns as keyword fields (`fields_json`); it may use them or ignore them.
"""

from __future__ import annotations

from typing import Any

DEFAULT_TARGET_CHARS = 40


def brevity(completion: str, reference: str, **fields: Any) -> float:
    """1 for a completion of at most `target_chars` characters, falling linearly to 0 at twice that.

    reward = clip(2 - len(completion) / target_chars, 0, 1); `target_chars` comes from the row's
    fields when it has such a column, else DEFAULT_TARGET_CHARS.
    """
    del reference  # brevity does not look at the answer
    target = float(fields.get("target_chars", DEFAULT_TARGET_CHARS))
    if target <= 0:
        raise ValueError(f"target_chars must be > 0, got {target}")
    return min(1.0, max(0.0, 2.0 - len(completion) / target))
