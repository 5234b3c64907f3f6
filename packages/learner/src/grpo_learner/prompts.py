"""Prompts: the `PromptSource` protocol, a JSONL/Parquet loader, and the epoch-shuffling cursor.

A source is anything with `len()` and `source[i] -> PromptItem`. The cursor turns it into an endless
stream: draw number n is item `perm_epoch[n % len]` with a permutation seeded by (seed, epoch), so
the stream is a pure function of (seed, n) and the dataset position of a run is one integer.
Each draw gets the id `"<item id>@<n>"`: unique for the whole run, the idempotency key the rollout
services see, and enough to rebuild the prompt after a restart.

File layouts understood without configuration (override with `data.question_field` etc.):
  GSM8K  {"question": ..., "answer": "... #### 42"}   the reference keeps the full answer (`#### 42`)
  MATH   {"problem": ..., "solution": "... \\boxed{5}"} (or an "answer" column when present)
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

QUESTION_FIELDS = ("question", "problem", "prompt")
ANSWER_FIELDS = ("answer", "solution", "reference")


@dataclass(frozen=True)
class PromptItem:
    id: str
    reference: str
    text: str = ""  # exactly one of text / token_ids
    token_ids: tuple[int, ...] = ()
    task: str = ""


class PromptSource(Protocol):
    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> PromptItem: ...


@dataclass(frozen=True)
class ListPromptSource:
    items: Sequence[PromptItem]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> PromptItem:
        return self.items[index]


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"data.path {path} does not exist")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if path.suffix in (".jsonl", ".json"):
        rows = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: not valid JSON ({exc})") from None
        return rows
    raise ValueError(f"data.path {path}: unknown format {path.suffix!r}; use .jsonl or .parquet")


def _pick(row: dict[str, Any], given: str | None, candidates: Sequence[str], what: str, path: Path) -> str:
    names = (given,) if given else candidates
    for name in names:
        if name in row:
            return name
    option = f"data.{what}_field"
    raise ValueError(f"{path}: no {what} column {list(names)}; columns are {sorted(row)}; set {option}")


def read_hub_rows(name: str, config_name: str | None, split: str) -> list[dict[str, Any]]:
    """Rows of a Hugging Face `datasets` dataset (needs `pip install grpo-learner[datasets]`)."""
    try:
        import datasets
    except ImportError:
        raise ValueError(
            f"data.hub_name {name!r} needs the `datasets` package: install grpo-learner[datasets] "
            "(or `uv sync --extra datasets`), or download the data to a JSONL/Parquet file and use data.path"
        ) from None
    return datasets.load_dataset(name, config_name, split=split).to_list()


def load_prompt_file(
    path: Path | str,
    *,
    question_field: str | None = None,
    answer_field: str | None = None,
    id_field: str | None = None,
    prompt_template: str = "{question}",
    task: str = "",
    rows: list[dict[str, Any]] | None = None,
) -> ListPromptSource:
    """Read a JSONL/Parquet problem file (or given `rows`, labelled `path` in errors) into prompts.

    Prompts stay text; the rollout service tokenises them with the model's tokenizer.
    """
    rows = read_rows(Path(path)) if rows is None else rows
    if not rows:
        raise ValueError(f"data.path {path} holds no rows")
    q = _pick(rows[0], question_field, QUESTION_FIELDS, "question", path)
    a = _pick(rows[0], answer_field, ANSWER_FIELDS, "answer", path)
    items = []
    for index, row in enumerate(rows):
        if row.get(q) is None or row.get(a) is None:
            raise ValueError(f"{path}: row {index} has no {q!r} or {a!r}")
        row_id = str(row[id_field]) if id_field else str(index)
        text = prompt_template.format(question=row[q])
        items.append(PromptItem(id=row_id, reference=str(row[a]), text=text, task=task))
    return ListPromptSource(items)


class PromptCursor:
    """An endless, reproducible stream of draws from a source; its state is one integer."""

    def __init__(self, source: PromptSource, seed: int = 0, shuffle: bool = True, position: int = 0) -> None:
        if len(source) == 0:
            raise ValueError("the prompt source is empty")
        self.source = source
        self.seed = seed
        self.shuffle = shuffle
        self.position = position
        self._epoch = -1
        self._order: list[int] = []

    def item_at(self, draw: int) -> PromptItem:
        """The prompt of draw number `draw`, with its run-unique id."""
        epoch, offset = divmod(draw, len(self.source))
        if epoch != self._epoch:
            self._order = list(range(len(self.source)))
            if self.shuffle:
                random.Random(f"{self.seed}:{epoch}").shuffle(self._order)
            self._epoch = epoch
        item = self.source[self._order[offset]]
        return PromptItem(f"{item.id}@{draw}", item.reference, item.text, item.token_ids, item.task)

    def take(self, count: int) -> list[tuple[int, PromptItem]]:
        draws = [(n, self.item_at(n)) for n in range(self.position, self.position + count)]
        self.position += count
        return draws
