"""Prompts: the `PromptSource` protocol, a JSONL/Parquet loader, and the epoch-shuffling cursor.

A source is anything with `len()` and `source[i] -> PromptItem`. The cursor turns it into an endless
stream: draw number n is item `perm_epoch[n % len]` with a permutation seeded by (seed, epoch), so
the stream is a pure function of (seed, n) and the dataset position of a run is one integer.
Each draw gets the id `"<item id>@<n>"`: unique for the whole run, the idempotency key the rollout
services see, and enough to rebuild the prompt after a restart.

File layouts understood without configuration (override with `data.question_field` etc.):
  GSM8K  {"question": ..., "answer": "... #### 42"}   the reference keeps the full answer (`#### 42`)
  MATH   {"problem": ..., "solution": "... \\boxed{5}"} (or an "answer" column when present)

Every other column of a row travels to the reward task as its keyword fields (`fields_json`, e.g.
`tests` for code, `choices` for multiple choice), a `task` column names the row's own reward
task (mixed-task datasets; rows without one use `reward.task`), and an `env` column the row's own
environment of multi-turn episodes (`none`: single-turn; rows without one use
`rollout.environment.name`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

QUESTION_FIELDS = ("question", "problem", "prompt")
ANSWER_FIELDS = ("answer", "solution", "reference")
TASK_FIELD = "task"
ENV_FIELD = "env"
MAX_FIELDS_BYTES = 1 << 20  # grpo.v1.ScoreItem.fields_json: the reward server's default limit


@dataclass(frozen=True)
class PromptItem:
    id: str
    reference: str
    text: str = ""  # exactly one of text / token_ids
    token_ids: tuple[int, ...] = ()
    task: str = ""
    fields_json: str = ""  # the row's extra columns as one JSON object ("" = none)
    environment: str = ""  # the row's `env` column ("" = the run's rollout.environment.name)


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
    if not path.exists():
        raise FileNotFoundError(f"data.path {path} does not exist")
    if not path.is_file():
        raise ValueError(f"data.path {path} is not a file")
    if path.suffix == ".parquet":
        import pyarrow
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except pyarrow.ArrowException as exc:
            raise ValueError(f"data.path {path} is not a readable Parquet file ({exc})") from None
    if path.suffix in (".jsonl", ".json"):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"data.path {path} is not UTF-8 text ({exc})") from None
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except (json.JSONDecodeError, RecursionError, ValueError) as exc:
                    raise ValueError(f"{path}:{number}: not valid JSON ({str(exc)[:200]})") from None
                if not isinstance(row, dict):
                    raise ValueError(
                        f"{path}:{number}: a row must be a JSON object, got {type(row).__name__}"
                    )
                rows.append(row)
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


def row_name(row: dict[str, Any], column: str, default: str, where: str, what: str) -> str:
    """The row's own `column` (the name of a `what`) if it has one and it is not empty, else `default`."""
    name = row.get(column)
    if name is None or name == "":
        return default
    if not isinstance(name, str):
        raise ValueError(f"{where}: column {column!r} must be {what} name (a string), got {name!r}")
    return name


def row_fields(row: dict[str, Any], used: set[str], max_bytes: int, where: str) -> str:
    """The columns not in `used` as one JSON object ("" when none), at most `max_bytes` of UTF-8.

    Checked here so that a bad row fails at start-up naming the row, not mid-run in the reward service.
    """
    extra = {name: value for name, value in row.items() if name not in used}
    if not extra:
        return ""
    try:
        text = json.dumps(extra, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{where}: its extra columns {sorted(extra)} cannot be sent as JSON fields ({exc}); "
            "convert them to strings, numbers, lists or objects, or drop them from the data"
        ) from None
    size = len(text.encode())
    if size > max_bytes:
        raise ValueError(
            f"{where}: its extra columns {sorted(extra)} are {size} bytes of JSON, over "
            f"reward.max_fields_bytes = {max_bytes}; drop large columns or raise the limit (on the "
            "reward server too)"
        )
    return text


def load_prompt_file(
    path: Path | str,
    *,
    question_field: str | None = None,
    answer_field: str | None = None,
    id_field: str | None = None,
    prompt_template: str = "{question}",
    task: str = "",
    rows: list[dict[str, Any]] | None = None,
    max_fields_bytes: int = MAX_FIELDS_BYTES,
) -> ListPromptSource:
    """Read a JSONL/Parquet problem file (or given `rows`, labelled `path` in errors) into prompts.

    Prompts stay text; the rollout service tokenises them with the model's tokenizer. `task` is the
    default reward task; an `env` column is the row's environment; columns other than question,
    answer, id, task and env become the row's fields.
    """
    rows = read_rows(Path(path)) if rows is None else rows
    if not rows:
        raise ValueError(f"data.path {path} holds no rows")
    q = _pick(rows[0], question_field, QUESTION_FIELDS, "question", path)
    a = _pick(rows[0], answer_field, ANSWER_FIELDS, "answer", path)
    used = {q, a, TASK_FIELD, ENV_FIELD} | ({id_field} if id_field else set())
    items = []
    for index, row in enumerate(rows):
        if row.get(q) is None or row.get(a) is None:
            raise ValueError(f"{path}: row {index} has no {q!r} or {a!r}")
        row_id = str(row[id_field]) if id_field else str(index)
        where = f"{path}: row {index} (id {row_id!r})"
        text = prompt_template.format(question=row[q])
        if not text:
            raise ValueError(f"{where}: its prompt is empty (column {q!r} is {row[q]!r})")
        if not str(row[a]).strip():
            raise ValueError(f"{where}: its answer (column {a!r}) is empty; the verifier needs one")
        items.append(
            PromptItem(
                id=row_id,
                reference=str(row[a]),
                text=text,
                task=row_name(row, TASK_FIELD, task, where, "a task"),
                fields_json=row_fields(row, used, max_fields_bytes, where),
                environment=row_name(row, ENV_FIELD, "", where, "an environment"),
            )
        )
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
        return replace(item, id=f"{item.id}@{draw}")

    def take(self, count: int) -> list[tuple[int, PromptItem]]:
        draws = [(n, self.item_at(n)) for n in range(self.position, self.position + count)]
        self.position += count
        return draws
