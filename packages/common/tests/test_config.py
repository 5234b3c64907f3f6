"""Configuration: file < environment < flags, errors naming the field and its source; logging."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from grpo_common.config import ConfigError, load_config
from grpo_common.logging_setup import configure_logging
from grpo_common.server import ServerConfig
from pydantic import BaseModel, ConfigDict, Field, SecretStr


class DemoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = "tiny"
    learning_rate: float = Field(1e-5, gt=0)
    addresses: list[str] = ["127.0.0.1:50052"]
    server: ServerConfig = Field(default_factory=ServerConfig)


TOML = """
model = "from-file"
learning_rate = 0.001
[server]
port = 50051
grace_seconds = 3.5
[server.tls]
cert = "/etc/grpo/server.pem"
key = "/etc/grpo/server.key"
"""

YAML = """
model: from-file
learning_rate: 0.001
server:
  port: 50051
  grace_seconds: 3.5
  tls:
    cert: /etc/grpo/server.pem
    key: /etc/grpo/server.key
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(("name", "text"), [("demo.toml", TOML), ("demo.yaml", YAML), ("demo.yml", YAML)])
def test_toml_and_yaml_files_load_into_the_typed_model(tmp_path, name, text) -> None:
    config = load_config(DemoConfig, config_file=_write(tmp_path, name, text), environ={})
    assert config.model == "from-file" and config.learning_rate == 0.001
    assert config.server.port == 50051 and config.server.grace_seconds == 3.5
    assert config.server.tls.cert == Path("/etc/grpo/server.pem") and config.server.tls.enabled
    assert config.server.host == "127.0.0.1"  # untouched defaults stay


def test_environment_overrides_the_file_and_flags_override_both(tmp_path) -> None:
    path = _write(tmp_path, "demo.toml", TOML)
    environ = {
        "GRPO_DEMO_SERVER__PORT": "6000",
        "GRPO_DEMO_MODEL": "from-env",
        "GRPO_DEMO_ADDRESSES": '["a:1", "b:2"]',
        "GRPO_DEMO_SERVER__AUTH_TOKEN": "12345",  # digits stay a string for a string field
        "OTHER_MODEL": "ignored",
    }
    config = load_config(DemoConfig, config_file=path, env_prefix="GRPO_DEMO_", environ=environ)
    assert config.server.port == 6000 and config.model == "from-env"
    assert config.addresses == ["a:1", "b:2"]
    assert config.server.auth_token == SecretStr("12345")
    assert config.learning_rate == 0.001  # from the file: nobody overrode it

    flags = {"server.port": 7000, "model": None, "learning_rate": 0.5}  # None = flag not given
    config = load_config(
        DemoConfig, config_file=path, env_prefix="GRPO_DEMO_", environ=environ, overrides=flags
    )
    assert config.server.port == 7000 and config.learning_rate == 0.5
    assert config.model == "from-env"


def test_errors_name_the_field_and_where_the_value_came_from(tmp_path) -> None:
    path = _write(tmp_path, "demo.toml", "learning_rate = -1\n[server]\nport = 70000\n")
    with pytest.raises(ConfigError) as err:
        load_config(DemoConfig, config_file=path, environ={})
    message = str(err.value)
    assert "learning_rate" in message and "server.port" in message and str(path) in message

    with pytest.raises(ConfigError, match=r"server\.port.*environment variable GRPO_DEMO_SERVER__PORT"):
        load_config(DemoConfig, env_prefix="GRPO_DEMO_", environ={"GRPO_DEMO_SERVER__PORT": "many"})

    with pytest.raises(ConfigError, match=r"server\.grace_seconds.*command-line flag"):
        load_config(DemoConfig, environ={}, overrides={"server.grace_seconds": -2})


def test_misspelt_settings_are_errors_not_ignored(tmp_path) -> None:
    path = _write(tmp_path, "demo.yaml", "server:\n  max_mesage_bytes: 1000\n")
    with pytest.raises(ConfigError, match=r"server\.max_mesage_bytes"):
        load_config(DemoConfig, config_file=path, environ={})


def test_a_bad_token_value_is_never_echoed(tmp_path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(DemoConfig, environ={}, overrides={"server.auth_token": ["hunter2-secret"]})
    assert "server.auth_token" in str(err.value) and "hunter2-secret" not in str(err.value)


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("demo.toml", "model = \n", "not valid toml"),
        ("demo.yaml", "server: [unclosed\n", "not valid yaml"),
        ("demo.ini", "x=1\n", "unknown format '.ini'"),
        ("demo.yaml", "- a\n- b\n", "must hold a table/mapping"),
    ],
)
def test_unreadable_files_are_config_errors(tmp_path, name, text, problem) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_config(DemoConfig, config_file=_write(tmp_path, name, text), environ={})


def test_a_missing_file_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(DemoConfig, config_file=tmp_path / "nope.toml", environ={})


def test_configure_logging_writes_one_line_per_record_to_stderr(capsys) -> None:
    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    try:
        configure_logging("DEBUG")
        configure_logging("INFO")  # calling again replaces its handler instead of doubling lines
        logging.getLogger("grpo.test").info("hello %s", "world")
        logging.getLogger("grpo.test").debug("hidden")
        captured = capsys.readouterr()
        lines = [line for line in captured.err.splitlines() if "grpo.test" in line]
        assert len(lines) == 1 and "INFO grpo.test[" in lines[0] and lines[0].endswith("hello world")
        assert "hello" not in captured.out
    finally:
        for handler in list(root.handlers):
            if handler not in before[1]:
                root.removeHandler(handler)
        root.setLevel(before[0])
