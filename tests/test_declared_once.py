"""Each default is declared once: in its config section, never again in the component built from it.

Read from the source (no imports, so it is cheap): a class or function that takes a config section
(a `ConfigSection` subclass) as a parameter is built from that section, so none of its keyword
defaults or dataclass fields may carry a literal default under the name of one of the section's
fields. That is how `PoolSettings` restated `[rollout]`'s probe settings and `SGLangGenerator.connect`
waited 60 s where `[sglang]` says 900: the copy drifts, the section does not.
"""

from __future__ import annotations

import ast
from pathlib import Path

SOURCES = sorted(Path(__file__).resolve().parents[1].glob("packages/*/src/**/*.py"))
BASE = "ConfigSection"


def _literal(node: ast.expr | None) -> object:
    try:
        return ast.literal_eval(node) if node is not None else None
    except ValueError:
        return None


def _annotation_names(node: ast.expr | None) -> set[str]:
    """The class names an annotation mentions (`RolloutConfig | None`, "PushConfig")."""
    if node is None:
        return set()
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return _annotation_names(ast.parse(node.value, mode="eval").body)
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
    }


def _config_sections(trees: dict[Path, ast.Module]) -> dict[str, set[str]]:
    """Every ConfigSection subclass (transitively) -> the names of its fields."""
    classes = {
        node.name: node
        for tree in trees.values()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    }
    sections: dict[str, set[str]] = {}
    changed = True
    while changed:
        changed = False
        for name, node in classes.items():
            bases = {b.id for b in node.bases if isinstance(b, ast.Name)} | {
                b.attr for b in node.bases if isinstance(b, ast.Attribute)
            }
            if name not in sections and (BASE in bases or bases & set(sections)):
                fields = {
                    s.target.id
                    for s in node.body
                    if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
                }
                sections[name] = fields
                changed = True
    return sections


def _defaults(function: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[str, object]:
    args = function.args
    positional = args.posonlyargs + args.args
    pairs = list(zip(positional[len(positional) - len(args.defaults) :], args.defaults, strict=True))
    pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None]
    return {arg.arg: value for arg, default in pairs if (value := _literal(default)) is not None}


def _sections_taken(
    function: ast.FunctionDef | ast.AsyncFunctionDef, sections: dict[str, set[str]]
) -> set[str]:
    args = function.args
    every = args.posonlyargs + args.args + args.kwonlyargs
    return {name for arg in every for name in _annotation_names(arg.annotation) if name in sections}


def restated_defaults(trees: dict[Path, ast.Module]) -> list[str]:
    sections = _config_sections(trees)
    found = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name not in sections:
                methods = [m for m in node.body if isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef)]
                taken = set().union(*(_sections_taken(m, sections) for m in methods)) if methods else set()
                fields = set().union(*(sections[s] for s in taken)) if taken else set()
                own = {
                    s.target.id: _literal(s.value)
                    for s in node.body
                    if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
                }
                for init in (m for m in methods if m.name == "__init__"):
                    own |= _defaults(init)
                found += [
                    f"{path.name}: {node.name}.{name} = {value!r} restates {sorted(taken)}.{name}"
                    for name, value in own.items()
                    if name in fields and value is not None
                ]
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                taken = _sections_taken(node, sections)
                fields = set().union(*(sections[s] for s in taken)) if taken else set()
                found += [
                    f"{path.name}: {node.name}({name}={value!r}) restates {sorted(taken)}.{name}"
                    for name, value in _defaults(node).items()
                    if name in fields
                ]
    return found


def test_no_component_restates_a_default_of_the_config_section_it_is_built_from() -> None:
    trees = {path: ast.parse(path.read_text(), str(path)) for path in SOURCES}
    assert len(_config_sections(trees)) > 25  # the scan sees the sections (or it would pass vacuously)
    assert restated_defaults(trees) == []


def test_the_check_finds_a_settings_copy_of_a_section() -> None:
    """The shape PoolSettings had: a dataclass built by from_config(section), restating its defaults."""
    source = """
class ConfigSection: ...
class RolloutConfig(ConfigSection):
    probe_interval_s: float = 0.5
    max_attempts: int = 40
class PoolSettings:
    probe_interval_s: float = 0.5
    @classmethod
    def from_config(cls, rollout: RolloutConfig) -> "PoolSettings": ...
class Client:
    def __init__(self, settings: "RolloutConfig | None" = None, max_attempts: int = 5) -> None: ...
"""
    found = restated_defaults({Path("example.py"): ast.parse(source)})
    assert found == [
        "example.py: PoolSettings.probe_interval_s = 0.5 restates ['RolloutConfig'].probe_interval_s",
        "example.py: Client.max_attempts = 5 restates ['RolloutConfig'].max_attempts",
        "example.py: __init__(max_attempts=5) restates ['RolloutConfig'].max_attempts",
    ]
