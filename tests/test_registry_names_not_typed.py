"""No registry's names are written out by hand: code and docs read them from the registry.

A list that names every entry of a registry is a copy of it, and a copy goes stale the day an entry is
added (the losses were once listed in six places). So, for every registry a user picks from by name:
no `Literal[...]` or argparse `choices` holds two or more of its names (that closes the registry
again), and no docstring, string or README names all of its entries in one enumeration (`grpo, bnpo,
dapo, ...`, `group | batch | none`). A few names as examples are fine; the complete list is what
`--help` and the error for an unknown name print, from the registry itself.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REGISTRIES = {  # what a user picks by name -> (module, attribute)
    "loss": ("grpo_learner.grpo.losses", "LOSSES"),
    "advantage estimator": ("grpo_learner.grpo.advantages", "ADVANTAGE_ESTIMATORS"),
    "combine mode": ("grpo_learner.grpo.advantages", "COMBINE_MODES"),
    "sampler weight level": ("grpo_learner.grpo.losses", "SAMPLER_WEIGHT_LEVELS"),
    "push transport": ("grpo_learner.weight_sync.transports", "PUSH_TRANSPORTS"),
    "LoRA push mode": ("grpo_learner.weight_sync.push_selection", "LORA_SELECTIONS"),
    "generator backend": ("grpo_rollout.backends.registry", "GENERATORS"),
    "environment": ("grpo_rollout.environments", "ENVIRONMENTS"),
    "reward task": ("grpo_reward.tasks", "TASKS"),
}
SEPARATOR = r"[`'\"]?\s*(?:,|\||/|\bor\b|\band\b)\s*[`'\"]?"


def registered_names() -> dict[str, set[str]]:
    return {kind: set(getattr(importlib.import_module(m), a)) for kind, (m, a) in REGISTRIES.items()}


def complete_lists(text: str, names: dict[str, set[str]]) -> list[str]:
    """Each enumeration in `text` that names every entry of a registry with three or more."""
    found = []
    for kind, entries in names.items():
        if len(entries) < 3:
            continue
        word = "|".join(sorted(map(re.escape, entries), key=len, reverse=True))
        pattern = rf"\b(?:{word})\b(?:{SEPARATOR}\b(?:{word})\b)+"
        for match in re.finditer(pattern, text):
            if set(re.findall(rf"\b(?:{word})\b", match.group(0))) == entries:
                found.append(f"every {kind}: {match.group(0)!r}")
    return found


def closed_choices(tree: ast.Module, names: dict[str, set[str]]) -> list[str]:
    """`Literal[...]` annotations and argparse `choices=[...]` holding two or more names of a registry."""
    found = []
    for node in ast.walk(tree):
        values: list[ast.expr] = []
        if isinstance(node, ast.Subscript) and getattr(node.value, "id", None) == "Literal":
            values = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
        elif (
            isinstance(node, ast.keyword)
            and node.arg == "choices"
            and isinstance(node.value, ast.List | ast.Tuple)
        ):
            values = list(node.value.elts)
        strings = {v.value for v in values if isinstance(v, ast.Constant) and isinstance(v.value, str)}
        found += [
            f"line {node.lineno}: {sorted(strings)} closes the {kind} registry"
            for kind, entries in names.items()
            if len(strings & entries) >= 2
        ]
    return found


def typed_names(path: Path, names: dict[str, set[str]]) -> list[str]:
    text = path.read_text()
    if path.suffix != ".py":
        return complete_lists(text, names)
    tree = ast.parse(text, str(path))
    strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    return closed_choices(tree, names) + [hit for s in strings for hit in complete_lists(s, names)]


def test_no_registry_is_listed_by_hand_in_code_or_docs() -> None:
    names = registered_names()
    paths = [
        *ROOT.glob("packages/*/src/**/*.py"),
        *ROOT.glob("packages/*/README.md"),
        ROOT / "README.md",
        *ROOT.glob("docs/**/*.md"),
    ]
    found = {str(p.relative_to(ROOT)): hits for p in paths if (hits := typed_names(p, names))}
    assert found == {}


def test_the_check_finds_a_hand_written_list_and_a_literal() -> None:
    names = {"loss": {"grpo", "dapo", "gspo"}, "generator backend": {"hf", "sglang"}}
    assert complete_lists("loss_type: grpo | dapo | gspo", names) == ["every loss: 'grpo | dapo | gspo'"]
    assert complete_lists("e.g. `dapo`, `grpo`", names) == []  # examples, not the list
    tree = ast.parse(
        'generator: Literal["hf", "sglang"] = "hf"\np.add_argument("--x", choices=["hf", "sglang"])'
    )
    assert closed_choices(tree, names) == [
        "line 1: ['hf', 'sglang'] closes the generator backend registry",
        "line 2: ['hf', 'sglang'] closes the generator backend registry",
    ]
