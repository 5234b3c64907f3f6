"""Exit 0 when a gRPC service answers grpc.health.v1 SERVING, else 1: the container health probe.

Kubernetes' built-in `grpc:` probe and Docker's healthcheck cannot speak TLS, and these services
serve TLS when given a certificate, so the image carries this probe and the manifests run it:

    python /app/deploy/grpc_health_probe.py --address 127.0.0.1:50053 \
        --service grpo.v1.RewardService --ca /certs/ca.crt --server-name localhost

Health checks are exempt from the auth token (grpo_common.security), so no token is sent.
It uses grpcio only: the image already has it, and the probe stays well under a second.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grpc_health_probe", description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True, help="host:port of the service")
    parser.add_argument("--service", default="", help="service name to ask about ('' = the whole server)")
    parser.add_argument("--ca", type=Path, help="PEM CA bundle; turns TLS on")
    parser.add_argument("--server-name", help="name to verify in the server certificate (with --ca)")
    parser.add_argument("--timeout-s", type=float, default=3.0, help="deadline of the check")
    return parser


def check(address: str, service: str, ca: Path | None, server_name: str | None, timeout_s: float) -> str:
    """The health status name ("SERVING", "NOT_SERVING", ...) or the gRPC error code's name."""
    if ca is None:
        channel = grpc.insecure_channel(address)
    else:
        options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
        credentials = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
        channel = grpc.secure_channel(address, credentials, options=options)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError as error:
            return error.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    status = check(args.address, args.service, args.ca, args.server_name, args.timeout_s)
    print(f"{args.address} {args.service or '(server)'}: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
