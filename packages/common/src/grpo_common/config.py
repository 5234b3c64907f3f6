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
from pydantic import BaseModel, ConfigDict, ValidationError

ConfigT = TypeVar("ConfigT", bound=BaseModel)

# Where each leaf value came from, keyed by its path: ("server", "port") -> "environment variable X".
Sources = dict[tuple[str, ...], str]


class ConfigSection(BaseModel):
    """The base of every config section in every package: a misspelt key is an error, not a silently
    ignored setting, and a number is finite (`temperature = inf` or `lr = nan` is refused here, not after
    the model is built)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


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

    Scalars stay strings and pydantic converts them to the field's type ("50052" becomes an int
    for a port but stays "12345" for a token). Values that look like JSON lists or tables are
    parsed, so `GRPO_LEARNER_ROLLOUT_ADDRESSES='["a:1","b:2"]'` gives a list.
    """
    return _env_overrides(prefix, os.environ if environ is None else environ, {})


def _env_overrides(prefix: str, environ: Mapping[str, str], sources: Sources) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(prefix) or key == prefix:
            continue
        path = key[len(prefix) :].lower().split("__")
        value: Any = raw
        if raw.lstrip().startswith(("[", "{")):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"environment variable {key} is not valid JSON: {exc}") from None
        _set_path(result, path, value)
        sources[tuple(path)] = f"environment variable {key}"
    return result


def _set_path(target: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        child = target.get(part)
        if not isinstance(child, dict):
            child = target[part] = {}
        target = child
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


def _record_sources(
    data: Mapping[str, Any], source: str, sources: Sources, prefix: tuple[str, ...] = ()
) -> None:
    for key, value in data.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping) and value:
            _record_sources(value, source, sources, path)
        else:
            sources[path] = source


def _source_of(loc: tuple[Any, ...], sources: Sources) -> str:
    """The source of the longest recorded path that is a prefix of (or extends) the error location."""
    path = tuple(str(part) for part in loc)
    for end in range(len(path), 0, -1):
        if path[:end] in sources:
            return sources[path[:end]]
    below = [source for key, source in sources.items() if key[: len(path)] == path]
    return below[-1] if below else "defaults"


def load_config(
    model: type[ConfigT],
    *,
    config_file: Path | None = None,
    env_prefix: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ConfigT:
    """Build `model` from (lowest to highest precedence) the file, the environment and `overrides`.

    `overrides` may use dotted keys ("server.port") and None for "not given" (an argparse default).
    A ConfigError names each bad field, what is wrong, and where the value came from.
    """
    sources: Sources = {}
    data: dict[str, Any] = {}
    if config_file:
        data = read_config_file(config_file)
        _record_sources(data, f"config file {config_file}", sources)
    if env_prefix:
        environ = os.environ if environ is None else environ
        data = deep_merge(data, _env_overrides(env_prefix, environ, sources))
    if overrides:
        nested = dotted_to_nested(overrides)
        _record_sources(nested, "command-line flag", sources)
        data = deep_merge(data, nested)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(err, sources) for err in exc.errors())
        raise ConfigError(f"invalid {model.__name__}: {problems}") from None


def _describe(err: Any, sources: Sources) -> str:
    field = ".".join(str(part) for part in err["loc"]) or "<root>"
    if err["type"] == "missing":
        return f"{field}: required but not set (give it in the config file, the environment or a flag)"
    # Never echo a secret back: the value of a field named like a token stays hidden.
    shown = "<hidden>" if any(word in field for word in ("token", "secret", "password")) else err.get("input")
    return f"{field}: {err['msg']} (got {shown!r} from {_source_of(err['loc'], sources)})"
