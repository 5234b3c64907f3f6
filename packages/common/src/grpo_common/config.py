"""Typed configuration: file < environment < CLI flags, validated by one pydantic model.

Every service and the learner describe their settings as a pydantic model. A user can write them
in a TOML or YAML file, override single values with environment variables
(`<PREFIX>SECTION__FIELD=value`, e.g. `GRPO_ROLLOUT_SERVER__PORT=50052`) and with CLI flags.
Errors name the offending field and where its value came from, before anything heavy is loaded.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

ConfigT = TypeVar("ConfigT", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the field and what to do."""


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a .toml, .yaml/.yml or .json file into a dict."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(
                f"config file {path}: unknown format {path.suffix!r}; use .toml, .yaml or .json"
            )
    except (tomllib.TOMLDecodeError, yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid {path.suffix[1:]}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table/mapping at the top level")
    return data


def env_overrides(prefix: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Collect `<prefix>A__B=value` variables into {"a": {"b": value}}.

    Values are parsed as JSON when they can be (numbers, booleans, lists), else kept as strings,
    so `GRPO_LEARNER_ROLLOUT_ADDRESSES='["a:1","b:2"]'` gives a list.
    """
    environ = os.environ if environ is None else environ
    result: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(prefix) or key == prefix:
            continue
        path = key[len(prefix) :].lower().split("__")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        _set_path(result, path, value)
    return result


def _set_path(target: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = value


def dotted_to_nested(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{"server.port": 1} -> {"server": {"port": 1}}; None values (flags not given) are dropped."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        if value is not None:
            _set_path(nested, key.split("."), value)
    return nested


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(
    model: type[ConfigT],
    *,
    config_file: Path | None = None,
    env_prefix: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ConfigT:
    """Build `model` from (lowest to highest precedence) the file, the environment and `overrides`.

    `overrides` may use dotted keys ("server.port") and None for "not given".
    """
    data: dict[str, Any] = read_config_file(config_file) if config_file else {}
    if env_prefix:
        data = deep_merge(data, env_overrides(env_prefix, environ))
    if overrides:
        data = deep_merge(data, dotted_to_nested(overrides))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']} (got {err.get('input')!r})"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid {model.__name__}: {problems}") from None
