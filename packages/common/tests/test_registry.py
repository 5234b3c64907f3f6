"""The one registry pattern: built-ins by name, entry-point plugins, module:attribute references."""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint

import pytest
from grpo_common.registry import Registry, UnknownName


def test_registered_names_are_found_and_listed_in_order() -> None:
    registry: Registry[int] = Registry("number")
    registry.add("two", 2)
    registry.register("one")(1)
    assert registry["one"] == 1 and registry.get_item("two") == 2
    assert list(registry) == ["one", "two"] and len(registry) == 2
    assert "one" in registry and "three" not in registry


def test_unknown_name_lists_what_is_registered() -> None:
    registry: Registry[int] = Registry("loss", "grpo.losses")
    registry.add("grpo", 1)
    with pytest.raises(UnknownName) as caught:
        registry["ppo"]
    message = str(caught.value)
    assert "unknown loss 'ppo'" in message and "registered: grpo" in message and "grpo.losses" in message
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, KeyError)


def test_a_name_cannot_be_registered_twice_with_another_item() -> None:
    registry: Registry[int] = Registry("number")
    registry.add("one", 1)
    registry.add("one", 1)  # the same item again (a re-imported module) is fine
    with pytest.raises(ValueError, match="already registered"):
        registry.add("one", 2)
    with pytest.raises(ValueError, match="no ':'"):
        registry.add("a:b", 3)


def test_module_attribute_reference_is_imported(tmp_path, monkeypatch) -> None:
    source = "class Holder:\n    value = 42\n\n\ndef score():\n    return 7\n"
    (tmp_path / "my_plugin_module.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry: Registry[object] = Registry("reward task")
    assert registry["my_plugin_module:score"]() == 7
    assert registry["my_plugin_module:Holder.value"] == 42
    with pytest.raises(UnknownName, match="has no 'missing'"):
        registry["my_plugin_module:missing"]
    with pytest.raises(UnknownName, match="cannot import module 'no_such_module_xyz'"):
        registry["no_such_module_xyz:f"]
    assert "my_plugin_module:score" in registry
    sys.modules.pop("my_plugin_module", None)


def test_entry_point_plugins_are_listed_and_loaded(monkeypatch) -> None:
    point = EntryPoint(name="plugged", value="math:sqrt", group="grpo.test_registry")
    registry: Registry[object] = Registry("thing", "grpo.test_registry")
    import grpo_common.registry as module

    monkeypatch.setattr(module, "entry_points", lambda group: [point] if group == point.group else [])
    assert list(registry) == ["plugged"]
    import math

    assert registry["plugged"] is math.sqrt


def test_wire_lookups_import_nothing_but_find_loaded_references(tmp_path, monkeypatch) -> None:
    (tmp_path / "wire_plugin_module.py").write_text("def score():\n    return 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry: Registry[object] = Registry("reward task", "grpo.test_registry")
    with pytest.raises(UnknownName, match="must be loaded by the operator"):
        registry.get_item("wire_plugin_module:score", import_references=False)
    assert "wire_plugin_module" not in sys.modules
    with pytest.raises(UnknownName):
        registry.get_item("os:system", import_references=False)
    registry.load_reference("wire_plugin_module:score")
    assert registry.get_item("wire_plugin_module:score", import_references=False)() == 7
    assert "wire_plugin_module:score" in list(registry)
    sys.modules.pop("wire_plugin_module", None)


def test_names_from_the_wire_are_bounded_in_lookups_and_in_messages() -> None:
    registry: Registry[object] = Registry("environment", "grpo.test_registry")
    registry.register("fixed")(object())
    huge = "x" * 2_000_000
    with pytest.raises(UnknownName) as refused:
        registry.get_item(huge, import_references=False)
    assert "longer than 200 characters" in str(refused.value) and len(str(refused.value)) < 300
    with pytest.raises(UnknownName) as unknown:
        registry.get_item("y" * 150, import_references=False)
    message = str(unknown.value)
    assert "'" + "y" * 80 + "'... (150 characters)" in message and "y" * 81 not in message
    assert "known here: fixed" in message
