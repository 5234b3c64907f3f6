"""The shared serve flags land in the right ServerConfig fields."""

from __future__ import annotations

import argparse
from pathlib import Path

from grpo_common.config import dotted_to_nested
from grpo_common.server import ServerConfig
from grpo_common.server_flags import add_server_flags, server_overrides


def _parse(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser()
    add_server_flags(parser, default_port=50099)
    overrides = {k: v for k, v in server_overrides(parser.parse_args(argv)).items() if v is not None}
    return dotted_to_nested(overrides)


def test_every_flag_sets_its_server_field(tmp_path: Path) -> None:
    cert, key, ca = (tmp_path / n for n in ("cert.pem", "key.pem", "ca.pem"))
    nested = _parse(
        ["--host", "0.0.0.0", "--port", "0", "--port-file", str(tmp_path / "port"), "--tls-cert", str(cert),
         "--tls-key", str(key), "--tls-client-ca", str(ca), "--auth-token", "s3cret"]
    )  # fmt: skip
    config = ServerConfig(**nested["server"])
    assert (config.host, config.port, config.port_file) == ("0.0.0.0", 0, tmp_path / "port")
    assert (config.tls.cert, config.tls.key, config.tls.client_ca) == (cert, key, ca)
    assert config.auth_token is not None and config.auth_token.get_secret_value() == "s3cret"


def test_flags_not_given_leave_the_config_file_in_charge() -> None:
    assert _parse([]) == {}
