"""The command-line flags every service's `serve` command shares, and the settings they set.

One definition, so `grpo-reward serve` and `grpo-rollout serve` spell, document and map the
network and security flags identically (deploy/ manifests and the README rely on that).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_server_flags(parser: argparse.ArgumentParser, default_port: int) -> None:
    """--host, --port, --port-file, --tls-cert, --tls-key, --tls-client-ca, --auth-token."""
    parser.add_argument("--host", help="bind address (default 127.0.0.1; 0.0.0.0 exposes the service)")
    parser.add_argument(
        "--port", type=int, help=f"port (default {default_port}; 0 picks a free one and prints it)"
    )
    parser.add_argument("--port-file", type=Path, help="write the bound port to this file once serving")
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate chain (with --tls-key): serve TLS")
    parser.add_argument("--tls-key", type=Path, help="PEM private key (with --tls-cert)")
    parser.add_argument(
        "--tls-client-ca", type=Path, help="PEM CA bundle: require client certificates (mTLS)"
    )
    parser.add_argument("--auth-token", help="require this bearer token (or set GRPO_AUTH_TOKEN)")


def server_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Dotted `server.*` settings from the flags (None = not given, the config file decides)."""
    return {
        "server.host": args.host,
        "server.port": args.port,
        "server.port_file": args.port_file,
        "server.tls.cert": args.tls_cert,
        "server.tls.key": args.tls_key,
        "server.tls.client_ca": args.tls_client_ca,
        "server.auth_token": args.auth_token,
    }
