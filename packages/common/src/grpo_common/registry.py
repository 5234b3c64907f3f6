"""One small registry pattern for every extension point: losses, advantages, reward tasks, environments,
generator backends.

A `Registry` maps names to implementations. Names come from three places, looked up in this order:

1. built-ins, added with the `@registry.register("name")` decorator where they are defined;
2. installed plugins: a package entry point in the registry's group (`[project.entry-points."grpo.tasks"]
   my_task = "my_pkg.rewards:score"`), imported the first time its name is asked for;
3. a dotted reference `module:attribute` (`my_rewards:score`), imported on demand, so a user's own module
   works without packaging it.

Lookups of names that arrive from outside (a request on the wire) pass `import_references=False`: they
find built-ins, entry points and the references the operator loaded with `load_reference`, and never import
a module because a caller named it (`os:system` is refused, not imported).

A registry is a read-only `Mapping` of what it knows by name (built-ins and entry points), so `name in
registry`, `registry[name]` and `sorted(registry)` do what they look like; `registry[name]` also resolves
`module:attribute`. Unknown names raise `UnknownName` (a `KeyError` and a `ValueError`), whose message lists
what is registered, e.g. `unknown loss 'ppo'; registered: dapo, grpo, gspo`.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

T = TypeVar("T")

# A name from an untrusted caller longer than this is refused before any entry-point scan.
MAX_NAME_CHARS = 200


class UnknownName(KeyError, ValueError):
    """A name that is neither registered, nor an installed entry point, nor an importable module:attr."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


class PluginError(RuntimeError):
    """An operator's plugin that cannot be loaded; the message names it and says why."""


class Registry(Mapping[str, T], Generic[T]):
    """Named implementations of one kind (`kind` is used in messages: "loss", "reward task", ...)."""

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._items: dict[str, T] = {}
        self._lock = threading.Lock()

    # -- adding -----------------------------------------------------------------------------------------
    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: `@LOSSES.register("grpo")` above the implementation."""

        def add(item: T) -> T:
            self.add(name, item)
            return item

        return add

    def add(self, name: str, item: T) -> None:
        """Register `item` as `name`, once: a second item under one name is a bug, not an override."""
        if not name or ":" in name:
            raise ValueError(f"{self.kind} name {name!r} must be non-empty and contain no ':'")
        with self._lock:
            existing = self._items.get(name)
            if existing is not None and existing is not item:
                raise ValueError(f"{self.kind} {name!r} is already registered ({_describe(existing)})")
            self._items[name] = item

    def load_reference(self, reference: str) -> T:
        """Import `module:attribute` now and register it under that very name (an operator's `--plugin`).

        Later lookups with `import_references=False` find it, so a service can run exactly the references
        its operator chose and no others.
        """
        item = self._import(reference)
        with self._lock:
            return self._items.setdefault(reference, item)

    def load_plugins(self, plugins: Sequence[str]) -> list[str]:
        """Load an operator's `--plugin`s and every installed entry point; the names now known.

        `module:attribute` is registered under that name (`load_reference`); a bare `module` is imported,
        for its `@register` calls. Entry points are loaded now, so a broken one stops start-up with its
        name instead of failing the first call that uses it. Raises PluginError naming the plugin.
        """
        for plugin in plugins:
            try:
                if ":" in plugin:
                    self.load_reference(plugin)
                else:
                    importlib.import_module(plugin)
            except UnknownName as error:
                raise PluginError(f"plugin {plugin!r}: {error}") from None
            except Exception as error:  # an import can fail in any way; name the plugin, not a traceback
                problem = f"{type(error).__name__}: {error}"
                raise PluginError(f"plugin {plugin!r} failed to import: {problem}") from None
        for name in list(self):
            try:
                self.get_item(name)
            except Exception as error:
                raise PluginError(
                    f"entry point {name!r} in group {self.entry_point_group!r} failed to load: "
                    f"{type(error).__name__}: {error}"
                ) from None
        return sorted(self)

    # -- finding ----------------------------------------------------------------------------------------
    def get_item(self, name: str, *, import_references: bool = True) -> T:
        """The implementation called `name` (see the module docstring for the lookup order).

        With `import_references=False` (names from untrusted callers) a `module:attribute` that is not
        already loaded is unknown instead of imported.
        """
        with self._lock:
            item = self._items.get(name)
        if item is not None:
            return item
        if not import_references and len(name) > MAX_NAME_CHARS:
            raise UnknownName(f"{self.kind} name {_shown(name)} is longer than {MAX_NAME_CHARS} characters")
        point = self._entry_points().get(name)
        if point is not None:
            loaded = point.load()
            with self._lock:
                return self._items.setdefault(name, loaded)
        if ":" in name and import_references:
            return self._import(name)
        raise UnknownName(self.unknown_message(name, import_references=import_references))

    def unknown_message(self, name: str, *, import_references: bool = True) -> str:
        known = ", ".join(sorted(self)) or "none"
        name = _shown(name)
        plugin = f", an entry point in group {self.entry_point_group!r}" if self.entry_point_group else ""
        if not import_references:
            group = self.entry_point_group
            installed = f" or installed as entry points in group {group!r}" if group else ""
            others = f"others must be loaded by the operator{installed}"
            return f"unknown {self.kind} {name}; known here: {known} ({others})"
        return f"unknown {self.kind} {name}; registered: {known} (or name module:attribute{plugin})"

    def _import(self, reference: str) -> T:
        module_name, _, attribute = reference.partition(":")
        if not module_name or not attribute:
            raise UnknownName(f"{self.kind} {reference!r}: write a plugin reference as module:attribute")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise UnknownName(
                f"{self.kind} {reference!r}: cannot import module {module_name!r}: {error}"
            ) from None
        item = module
        for part in attribute.split("."):
            if not hasattr(item, part):
                raise UnknownName(f"{self.kind} {reference!r}: module {module_name!r} has no {attribute!r}")
            item = getattr(item, part)
        return item  # type: ignore[return-value]

    def _entry_points(self) -> dict[str, EntryPoint]:
        if self.entry_point_group is None:
            return {}
        return {point.name: point for point in entry_points(group=self.entry_point_group)}

    # -- Mapping ----------------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> T:
        return self.get_item(name)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self.get_item(name)
        except UnknownName:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            names = set(self._items)
        return iter(sorted(names | set(self._entry_points())))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self)})"


def _describe(item: object) -> str:
    module = getattr(item, "__module__", None)
    qualname = getattr(item, "__qualname__", None)
    return f"{module}.{qualname}" if module and qualname else repr(item)


def _shown(name: str, limit: int = 80) -> str:
    """`name` quoted for a message, cut to `limit` characters: callers' names can be any length."""
    if len(name) <= limit:
        return repr(name)
    return f"{name[:limit]!r}... ({len(name)} characters)"
