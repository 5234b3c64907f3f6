"""Each default is declared once: in its config section, never again in the component built from it.

Read from the source (no imports, so it is cheap): a class or function that takes a config section
(a `ConfigSection` subclass) as a parameter is built from that section, so none of its keyword
defaults or dataclass fields may carry a literal default under the name of one of the section's
fields. That is how `PoolSettings` restated `[rollout]`'s probe settings and `SGLangGenerator.connect`
waited 60 s where `[sglang]` says 900: the copy drifts, the section does not.

Nor may a dataclass built by `from_config` copy a section's values into fields of its own (the shape
`UpdateSettings`, `LogprobSettings` and `EvalSettings` had): a component keeps the section and reads
it where it needs a value, so every value has one home and one default.
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


def _section_field_types(trees: dict[Path, ast.Module], sections: dict[str, set[str]]) -> dict[str, dict]:
    """Section -> field -> the sections its annotation names (empty: the field holds a value)."""
    types: dict[str, dict[str, set[str]]] = {}
    bases: dict[str, set[str]] = {}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name in sections:
                fields = types.setdefault(node.name, {})
                for s in node.body:
                    if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name):
                        fields[s.target.id] = _annotation_names(s.annotation) & set(sections)
                bases.setdefault(node.name, set()).update(
                    b.id for b in node.bases if isinstance(b, ast.Name) and b.id in sections
                )
    for name in types:  # inherited fields (sections subclassing sections)
        todo = list(bases.get(name, ()))
        while todo:
            base = todo.pop()
            types[name] = {**types.get(base, {}), **types[name]}
            todo += bases.get(base, ())
    return types


def _resolve(node: ast.expr, env: dict[str, str], types: dict[str, dict]) -> tuple[str, str] | None:
    """An attribute chain rooted at a name bound to a section: ("section", its class) while the chain
    names sections, ("value", "Section.field") once it names a field holding a value."""
    if isinstance(node, ast.Name):
        return ("section", env[node.id]) if node.id in env else None
    if not isinstance(node, ast.Attribute):
        return None
    base = _resolve(node.value, env, types)
    if base is None or base[0] != "section" or node.attr not in types.get(base[1], {}):
        return None  # not a declared field (a method or property computes, it does not copy)
    inner = types[base[1]][node.attr]
    return ("section", min(inner)) if inner else ("value", f"{base[1]}.{node.attr}")


def _is_dataclass(node: ast.ClassDef) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if (target.id if isinstance(target, ast.Name) else getattr(target, "attr", None)) == "dataclass":
            return True
    return False


def copying_settings(trees: dict[Path, ast.Module]) -> list[str]:
    """Dataclasses whose `from_config` passes a section's value (not the section) into the object."""
    sections = _config_sections(trees)
    types = _section_field_types(trees, sections)
    found = []
    for path, tree in trees.items():
        classes = (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and _is_dataclass(n))
        for node in classes:
            for method in (
                m for m in node.body if isinstance(m, ast.FunctionDef) and m.name == "from_config"
            ):
                args = method.args.posonlyargs + method.args.args + method.args.kwonlyargs
                env = {
                    a.arg: min(names)
                    for a in args
                    if (names := _annotation_names(a.annotation) & set(sections))
                }
                for _ in range(2):  # local names bound to sections: `loss = config.loss`, `e, b = ...`
                    for stmt in (s for s in ast.walk(method) if isinstance(s, ast.Assign)):
                        for target in stmt.targets:
                            pairs = (
                                zip(target.elts, stmt.value.elts, strict=False)
                                if isinstance(target, ast.Tuple) and isinstance(stmt.value, ast.Tuple)
                                else [(target, stmt.value)]
                            )
                            for name, value in pairs:
                                resolved = _resolve(value, env, types)
                                if isinstance(name, ast.Name) and resolved and resolved[0] == "section":
                                    env[name.id] = resolved[1]
                calls = (
                    c
                    for c in ast.walk(method)
                    if isinstance(c, ast.Call)
                    and isinstance(c.func, ast.Name)
                    and c.func.id in ("cls", node.name)
                )
                copied = {
                    resolved[1]
                    for call in calls
                    for arg in [*call.args, *(k.value for k in call.keywords)]
                    for sub in ast.walk(arg)
                    if (resolved := _resolve(sub, env, types)) and resolved[0] == "value"
                }
                found += [f"{path.name}: {node.name}.from_config copies {value}" for value in sorted(copied)]
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


def test_no_dataclass_copies_the_values_of_a_config_section() -> None:
    trees = {path: ast.parse(path.read_text(), str(path)) for path in SOURCES}
    assert copying_settings(trees) == []


def test_the_check_finds_a_dataclass_that_copies_section_values() -> None:
    """The shape UpdateSettings had: values copied out of sections, through aliases and expressions;
    holding a section whole, or reading a property of it, is no copy."""
    source = """
class ConfigSection: ...
class AdvantageConfig(ConfigSection):
    eps: float = 1e-4
class LossConfig(ConfigSection):
    beta: float = 0.0
    advantage: AdvantageConfig
class TrainConfig(ConfigSection):
    packing: bool = True
    packing_row_tokens: int = 1024
    @property
    def rows(self) -> int: ...
class LearnerConfig(ConfigSection):
    loss: LossConfig
    train: TrainConfig
@dataclass(frozen=True)
class UpdateSettings:
    @classmethod
    def from_config(cls, config: LearnerConfig) -> "UpdateSettings":
        loss = config.loss
        return cls(
            loss=loss,
            eps=loss.advantage.eps,
            rows=config.train.packing_row_tokens if config.train.packing else None,
            computed=config.train.rows,
        )
@dataclass
class Holder:
    @classmethod
    def from_config(cls, config: LearnerConfig) -> "Holder":
        return cls(config.train, config.loss.advantage)
class Pool:
    @classmethod
    def from_config(cls, train: TrainConfig) -> "Pool":
        return cls(train.packing, train)
"""
    assert copying_settings({Path("example.py"): ast.parse(source)}) == [
        "example.py: UpdateSettings.from_config copies AdvantageConfig.eps",
        "example.py: UpdateSettings.from_config copies TrainConfig.packing",
        "example.py: UpdateSettings.from_config copies TrainConfig.packing_row_tokens",
    ]
