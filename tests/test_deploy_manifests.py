"""Static checks of deploy/: the Dockerfile, the compose file and the Kubernetes manifests.

No Docker engine or cluster is available where these tests run, so nothing here starts a container.
Instead every manifest is parsed and cross-checked against the code it deploys: the args go through
the services' own argparse parsers and config models (a renamed flag or a misspelt setting fails),
ports agree between flags, containerPorts, Services and probes, every address a service dials
resolves to a Service and a port it exposes, the auth secret and the TLS files reach every
container that needs them, and the image's entrypoint names real console scripts. The one part
that does run is the health probe the manifests use: against a real TLS gRPC server on loopback,
with certificates from deploy/make-certs.sh, for the names the manifests dial.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from grpo.v1 import reward_pb2, reward_pb2_grpc
from grpo_common.security import TLSConfig
from grpo_common.server import ServerConfig, registration, start_server
from grpo_learner.cli import build_parser as learner_parser
from grpo_learner.cli import train_overrides
from grpo_learner.config import load_learner_config
from grpo_reward.cli import build_parser as reward_parser
from grpo_reward.service.config import ENV_PREFIX as REWARD_ENV_PREFIX
from grpo_reward.service.config import RewardServiceConfig
from grpo_rollout.cli import build_parser as rollout_parser
from grpo_rollout.cli import config_from_args

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
NAMESPACE = "grpo"
AUTH_ENV = "GRPO_AUTH_TOKEN"
PROBE = "/app/deploy/grpc_health_probe.py"
SERVICE_SCRIPTS = {"grpo-reward", "grpo-rollout", "grpo"}


# ---------------------------------------------------------------------------------------------
# Reading the manifests


@dataclass
class Container:
    """One service container, from compose or Kubernetes, in the shape the checks need."""

    where: str
    args: list[str]
    env: dict[str, str]  # literal values; secret references are in secret_env
    secret_env: dict[str, tuple[str, str]] = field(default_factory=dict)  # VAR -> (secret, key)
    mounts: dict[str, str] = field(default_factory=dict)  # mount path -> volume / host source
    container_ports: set[int] = field(default_factory=set)
    probes: dict[str, list[str]] = field(default_factory=dict)  # kind -> exec command

    @property
    def script(self) -> str:
        return self.args[0]


def flag(args: list[str], name: str) -> list[str]:
    """Every value given to `name` in an argv list (["--port", "1"] and "--port=1")."""
    values = []
    for i, arg in enumerate(args):
        if arg == name:
            values.append(args[i + 1])
        elif arg.startswith(name + "="):
            values.append(arg.split("=", 1)[1])
    return values


def one_flag(args: list[str], name: str) -> str:
    values = flag(args, name)
    assert len(values) == 1, f"expected one {name} in {args}"
    return values[0]


def k8s_documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    return docs


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def pod_templates(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in {"Deployment", "StatefulSet", "Job"}:
            yield doc, doc["spec"]["template"]["spec"]


def k8s_containers() -> list[tuple[dict[str, Any], dict[str, Any], Container]]:
    found = []
    for workload, pod in pod_templates(k8s_documents()):
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for c in pod["containers"]:
            where = f"k8s {workload['kind']}/{workload['metadata']['name']}/{c['name']}"
            env = {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
            secret_env = {
                e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
                for e in c.get("env", [])
                if "secretKeyRef" in e.get("valueFrom", {})
            }
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            for name in mounts.values():
                assert name in volumes, f"{where}: volumeMount {name!r} has no volume in the pod"
            probes = {
                kind: c[kind]["exec"]["command"]
                for kind in ("startupProbe", "readinessProbe", "livenessProbe")
                if kind in c
            }
            ports = {p["containerPort"] for p in c.get("ports", [])}
            found.append(
                (workload, volumes, Container(where, c["args"], env, secret_env, mounts, ports, probes))
            )
    return found


def compose_containers() -> dict[str, Container]:
    base_dir = DEPLOY
    found = {}
    for name, svc in compose()["services"].items():
        env = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
        mounts = {}
        for volume in svc.get("volumes", []):
            source, target, *_ = volume.split(":")
            mounts[target] = source
        probe = svc.get("healthcheck", {}).get("test")
        probes = {"healthcheck": probe[1:]} if probe else {}
        assert probe is None or probe[0] == "CMD", f"compose {name}: healthcheck must be an exec form"
        env_files = [base_dir / entry["path"] for entry in svc.get("env_file", [])]
        secret_env = {}
        for env_file in env_files:
            example = env_file.with_name(env_file.name + ".example")
            for line in example.read_text().splitlines():
                if "=" in line and not line.startswith("#"):
                    secret_env[line.split("=", 1)[0]] = (env_file.name, line.split("=", 1)[0])
        found[name] = Container(f"compose {name}", svc["command"], env, secret_env, mounts, set(), probes)
    return found


def all_containers() -> list[Container]:
    return [c for _, _, c in k8s_containers()] + list(compose_containers().values())


def servers() -> list[Container]:
    return [c for c in all_containers() if c.script in {"grpo-reward", "grpo-rollout"}]


# ---------------------------------------------------------------------------------------------
# Structure


def test_every_yaml_file_parses_and_kubernetes_objects_have_required_fields() -> None:
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert {f.name for f in files} >= {"compose.yaml", "reward.yaml", "rollout.yaml", "learner.yaml"}
    for path in files:
        assert list(yaml.safe_load_all(path.read_text())), f"{path} is empty"
    kinds = set()
    for doc in k8s_documents():
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        for key in ("apiVersion", "kind", "metadata"):
            assert key in doc, f"{name}: missing {key}"
        assert doc["metadata"].get("name"), f"{name}: metadata.name"
        if doc["kind"] not in {"Namespace", "ConfigMap"}:
            assert "spec" in doc, f"{name}: missing spec"
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{name}: namespace"
        kinds.add(doc["kind"])
    assert kinds >= {"Deployment", "StatefulSet", "Job", "Service", "PersistentVolumeClaim", "ConfigMap"}
    for workload, pod in pod_templates(k8s_documents()):
        if workload["kind"] != "Job":
            labels = workload["spec"]["template"]["metadata"]["labels"]
            selector = workload["spec"]["selector"]["matchLabels"]
            assert selector.items() <= labels.items(), f"{workload['metadata']['name']}: selector"
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod["containers"]:
            assert c.get("image") and c.get("args"), f"{workload['metadata']['name']}: image and args"
    listed = set(kustomization()["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_every_server_container_has_health_probes_that_dial_its_own_port() -> None:
    for c in servers():
        kinds = set(c.probes)
        assert kinds & {"readinessProbe", "healthcheck"}, f"{c.where}: no readiness probe"
        if c.where.startswith("k8s"):
            assert "livenessProbe" in kinds, f"{c.where}: no liveness probe"
        port = one_flag(c.args, "--port")
        for kind, command in c.probes.items():
            assert command[:2] == ["python", PROBE], f"{c.where} {kind}: {command}"
            address = one_flag(command, "--address")
            assert address == f"127.0.0.1:{port}", f"{c.where} {kind} dials {address}, serves {port}"
            services = flag(command, "--service")
            expected = {"grpo-reward": "grpo.v1.RewardService", "grpo-rollout": "grpo.v1.RolloutService"}
            assert services in ([], [expected[c.script]]), f"{c.where} {kind}: --service {services}"


# ---------------------------------------------------------------------------------------------
# Ports and addresses


def k8s_services() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in k8s_documents() if d["kind"] == "Service"}


def test_kubernetes_ports_agree_between_flags_container_ports_and_services() -> None:
    services = k8s_services()
    for workload, _, c in k8s_containers():
        if c.script == "grpo":
            continue
        port = int(one_flag(c.args, "--port"))
        assert one_flag(c.args, "--host") == "0.0.0.0", f"{c.where}: loopback is unreachable from a Service"
        assert c.container_ports == {port}, f"{c.where}: containerPort {c.container_ports} != --port {port}"
        labels = workload["spec"]["template"]["metadata"]["labels"]
        matching = [s for s in services.values() if s["spec"]["selector"].items() <= labels.items()]
        assert matching, f"{c.where}: no Service selects this pod"
        pod_ports = {
            p["name"]: p["containerPort"]
            for _, pod in pod_templates([workload])
            for cc in pod["containers"]
            for p in cc.get("ports", [])
        }
        for svc in matching:
            for p in svc["spec"]["ports"]:
                target = p.get("targetPort", p["port"])
                target = pod_ports.get(target, target)
                assert target == port, (
                    f"Service {svc['metadata']['name']} targets {target}, pod serves {port}"
                )
                assert p["port"] == port, "clients dial the Service port; keep it equal to the pod's"
        if workload["kind"] == "StatefulSet":
            governing = services[workload["spec"]["serviceName"]]
            assert governing["spec"].get("clusterIP") == "None", "per-pod DNS needs a headless Service"


def resolve_k8s(address: str) -> tuple[str, int]:
    """rollout-1.rollout.grpo.svc:50052 -> ("rollout-1.rollout", 50052), checked against manifests."""
    host, port = address.rsplit(":", 1)
    suffix = f".{NAMESPACE}.svc"
    assert host.endswith(suffix), f"{address}: name it <service>{suffix} (the TLS certificate's names)"
    host = host.removesuffix(suffix)
    services = k8s_services()
    statefulsets = {d["metadata"]["name"]: d for d in k8s_documents() if d["kind"] == "StatefulSet"}
    parts = host.split(".")
    service = services.get(parts[-1])
    assert service is not None and len(parts) <= 2, f"{address}: no Service {parts[-1]!r}"
    assert int(port) in {p["port"] for p in service["spec"]["ports"]}, f"{address}: port not exposed"
    if len(parts) == 2:  # a StatefulSet pod behind its headless Service
        pod, _, index = parts[0].rpartition("-")
        owner = statefulsets.get(pod)
        assert owner is not None and owner["spec"]["serviceName"] == parts[1], f"{address}: no such pod"
        assert int(index) < owner["spec"]["replicas"], f"{address}: only {owner['spec']['replicas']} pods"
    return host, int(port)


def test_kubernetes_addresses_resolve_and_the_learner_names_every_rollout_pod() -> None:
    by_script = {c.script: c for _, _, c in k8s_containers()}
    reward_address = one_flag(by_script["grpo-rollout"].args, "--reward-address")
    assert resolve_k8s(reward_address) == ("reward", int(one_flag(by_script["grpo-reward"].args, "--port")))
    rollout_port = int(one_flag(by_script["grpo-rollout"].args, "--port"))
    learner_targets = [resolve_k8s(a) for a in flag(by_script["grpo"].args, "--rollout")]
    replicas = next(d for d in k8s_documents() if d["kind"] == "StatefulSet")["spec"]["replicas"]
    assert learner_targets == [(f"rollout-{i}.rollout", rollout_port) for i in range(replicas)]


def test_compose_addresses_name_services_and_their_ports() -> None:
    containers = compose_containers()
    ports = {name: int(one_flag(c.args, "--port")) for name, c in containers.items() if c.script != "grpo"}
    for c in containers.values():
        for address in flag(c.args, "--reward-address") + flag(c.args, "--rollout"):
            host, port = address.rsplit(":", 1)
            assert host in ports, f"{c.where}: {address} names no compose service"
            assert int(port) == ports[host], f"{c.where}: {address}, but {host} serves {ports[host]}"
    assert one_flag(containers["rollout"].args, "--reward-address") == f"reward:{ports['reward']}"
    assert flag(containers["learner"].args, "--rollout") == [f"rollout:{ports['rollout']}"]
    gpu = {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    services = compose()["services"]
    for name in ("rollout", "learner"):
        assert services[name]["deploy"]["resources"]["reservations"]["devices"] == [gpu]
    assert services["rollout"]["depends_on"]["reward"]["condition"] == "service_healthy"
    assert services["learner"]["depends_on"]["rollout"]["condition"] == "service_healthy"


# ---------------------------------------------------------------------------------------------
# Secrets


def test_every_container_gets_the_auth_token_from_the_secret() -> None:
    generated = {g["name"]: g for g in kustomization()["secretGenerator"]}
    auth_keys = {
        line.split("=", 1)[0]
        for line in (DEPLOY / "auth.env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert generated["grpo-auth"]["envs"] == ["auth.env"]
    assert auth_keys == {AUTH_ENV}
    for c in all_containers():
        secret, key = c.secret_env.get(AUTH_ENV, (None, None))
        assert secret in {"grpo-auth", "auth.env"} and key == AUTH_ENV, f"{c.where}: no {AUTH_ENV} secret"
        assert "--auth-token" not in c.args, f"{c.where}: a token in args is visible in `ps` and manifests"


def tls_files(c: Container, tls_volume: str | None) -> dict[str, str]:
    """Mount path of the TLS material -> the file names the secret / certs folder provides."""
    if c.where.startswith("k8s"):
        generated = {g["name"]: g for g in kustomization()["secretGenerator"]}["grpo-tls"]
        assert generated["type"] == "kubernetes.io/tls"
        names = {entry.split("=", 1)[0] for entry in generated["files"]}
        for entry in generated["files"]:
            assert entry.split("=", 1)[1].startswith("certs/"), "make-certs.sh writes into certs/"
        return {path: "" for path, vol in c.mounts.items() if vol == tls_volume} | {"names": ",".join(names)}
    script = (DEPLOY / "make-certs.sh").read_text()
    names = set(re.findall(r"\b(?:ca|tls)\.(?:crt|key)\b", script))
    return {path: "" for path, src in c.mounts.items() if src == "./certs"} | {"names": ",".join(names)}


def referenced_tls_paths(c: Container, learner_config: dict[str, Any] | None) -> list[str]:
    paths = flag(c.args, "--tls-cert") + flag(c.args, "--tls-key")
    paths += [v for k, v in c.env.items() if k.endswith("__TLS__CA")]
    for command in c.probes.values():
        paths += flag(command, "--ca")
    if learner_config is not None:
        paths.append(learner_config["rollout"]["channel"]["tls"]["ca"])
    return paths


def test_tls_files_are_mounted_where_the_flags_and_configs_point() -> None:
    k8s = k8s_containers()
    config_toml = learner_configmap_toml()
    for _, volumes, c in k8s:
        tls_volume = next(
            (n for n, v in volumes.items() if v.get("secret", {}).get("secretName") == "grpo-tls")
        )
        available = tls_files(c, tls_volume)
        names = set(available.pop("names").split(","))
        learner = tomllib.loads(config_toml) if c.script == "grpo" else None
        paths = referenced_tls_paths(c, learner)
        assert paths, f"{c.where}: no TLS"
        for path in paths:
            p = PurePosixPath(path)
            assert str(p.parent) in available and p.name in names, f"{c.where}: {path} is not mounted"
    for c in compose_containers().values():
        available = tls_files(c, None)
        names = set(available.pop("names").split(","))
        learner = tomllib.loads((DEPLOY / "learner.toml").read_text()) if c.script == "grpo" else None
        for path in referenced_tls_paths(c, learner):
            p = PurePosixPath(path)
            assert str(p.parent) in available and p.name in names, f"{c.where}: {path} is not mounted"
    for c in servers():  # both halves of TLS, or a client would see a plaintext server
        assert len(flag(c.args, "--tls-cert")) == len(flag(c.args, "--tls-key")) == 1, c.where
    for c in all_containers():
        if c.script == "grpo-rollout":
            assert c.env.get("GRPO_ROLLOUT_REWARD__CHANNEL__TLS__CA"), f"{c.where}: reward client CA"


# ---------------------------------------------------------------------------------------------
# The args are real flags and valid configs


def learner_configmap_toml() -> str:
    configmap = next(d for d in k8s_documents() if d["kind"] == "ConfigMap")
    return configmap["data"]["learner.toml"]


def test_manifest_args_parse_and_validate_with_the_services_own_parsers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configs = {"k8s": tmp_path / "k8s.toml", "compose": DEPLOY / "learner.toml"}
    configs["k8s"].write_text(learner_configmap_toml())
    for c in all_containers():
        for key in [k for k in list(os.environ) if k.startswith("GRPO_")]:
            monkeypatch.delenv(key)
        for key, value in c.env.items():
            monkeypatch.setenv(key, value)
        argv = c.args[1:]
        if c.script == "grpo-reward":
            args = reward_parser().parse_args(argv)
            assert args.command == "serve"
            server = {
                "host": args.host,
                "port": args.port,
                "tls": {"cert": args.tls_cert, "key": args.tls_key},
            }
            RewardServiceConfig(server=server, workers=args.workers)
            assert not [k for k in c.env if k.startswith(REWARD_ENV_PREFIX)]
        elif c.script == "grpo-rollout":
            config = config_from_args(rollout_parser().parse_args(argv))
            assert config.server.tls.enabled and config.reward.channel.tls.ca is not None, c.where
        elif c.script == "grpo":
            args = learner_parser().parse_args(argv)
            assert args.command == "train" and args.resume, f"{c.where}: --resume survives restarts"
            config_file = configs["k8s" if c.where.startswith("k8s") else "compose"]
            learner = load_learner_config(config_file, train_overrides(args))
            assert learner.rollout.addresses == flag(c.args, "--rollout")
            assert str(learner.run_dir).startswith("/runs/"), f"{c.where}: run_dir must be on the volume"
            assert any(path == "/runs" for path in c.mounts), f"{c.where}: /runs is not persistent"
            rollout = next(
                r for r in all_containers() if r.script == "grpo-rollout" and r.where[:3] == c.where[:3]
            )
            model = one_flag(rollout.args, "--model")
            assert learner.model.name_or_path == model, f"{c.where}: learner and rollout serve other models"
        else:
            pytest.fail(f"{c.where}: {c.script} is not a console script of this project")


def option_strings(parser: argparse.ArgumentParser, command: str) -> set[str]:
    """The exact flags of `PROG command` (argparse would also accept unambiguous abbreviations)."""
    top = {s for a in parser._actions for s in a.option_strings}
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return top | {s for a in sub.choices[command]._actions for s in a.option_strings}


def test_manifests_spell_every_flag_in_full() -> None:
    """A flag renamed to a longer name would still parse as an abbreviation: demand exact names."""
    parsers = {"grpo-reward": reward_parser, "grpo-rollout": rollout_parser, "grpo": learner_parser}
    for c in all_containers():
        known = option_strings(parsers[c.script](), c.args[1])
        used = {a.split("=", 1)[0] for a in c.args if a.startswith("--")}
        assert used <= known, f"{c.where}: unknown flags {sorted(used - known)}"
    with pytest.raises(SystemExit):  # and one that is no prefix of anything fails parse_args itself
        rollout_parser().parse_args(["serve", "--reward-host", "reward:50053"])


# ---------------------------------------------------------------------------------------------
# The image


def console_scripts() -> set[str]:
    scripts = set()
    for pyproject in ROOT.glob("packages/*/pyproject.toml"):
        scripts |= set(tomllib.loads(pyproject.read_text()).get("project", {}).get("scripts", {}))
    return scripts


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_entrypoint_dispatches_to_the_projects_console_scripts() -> None:
    assert console_scripts() == SERVICE_SCRIPTS
    instructions = dockerfile_instructions()
    entrypoint = [yaml.safe_load(v) for k, v in instructions if k == "ENTRYPOINT"]
    cmd = [yaml.safe_load(v) for k, v in instructions if k == "CMD"]
    assert entrypoint == [["/app/deploy/entrypoint.sh"]] and cmd[-1][0] in SERVICE_SCRIPTS
    script = (DEPLOY / "entrypoint.sh").read_text()
    case = re.search(r"^\s*([\w|-]+)\)\s*$", script, re.MULTILINE)
    assert case is not None and set(case.group(1).split("|")) == SERVICE_SCRIPTS
    for c in all_containers():
        assert c.script in SERVICE_SCRIPTS, f"{c.where}: {c.script} is not a console script"
    users = [v for k, v in instructions if k == "USER"]
    assert users and not users[-1].startswith(("root", "0")), "the image must not run as root"
    uid = int(users[-1].split(":")[0])
    for workload, pod in pod_templates(k8s_documents()):
        assert pod["securityContext"]["runAsUser"] == uid, f"{workload['metadata']['name']}: image user"


def test_dockerfile_copies_files_that_exist_and_syncs_the_frozen_lock() -> None:
    instructions = dockerfile_instructions()
    for kind, value in instructions:
        if kind == "COPY" and not value.startswith("--from"):
            *sources, _ = shlex.split(value)
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the build context"
    runs = " ".join(v for k, v in instructions if k == "RUN")
    assert "uv sync --frozen --no-dev --all-packages" in runs
    members = {p.parent.name for p in ROOT.glob("packages/*/pyproject.toml")}
    copies = [v for k, v in instructions if k == "COPY"]
    copied = {m.group(1) for v in copies for m in re.finditer(r"^packages/(\w+)/pyproject.toml", v)}
    assert copied == members, "every workspace member's pyproject.toml goes into the dependency layer"
    extra = tomllib.loads((ROOT / "packages/rollout/pyproject.toml").read_text())["project"]
    assert "sglang" in extra["optional-dependencies"]


# ---------------------------------------------------------------------------------------------
# The health probe, for real


def run_probe(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(DEPLOY / "grpc_health_probe.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def test_health_probe_speaks_tls_to_the_names_the_manifests_dial(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    subprocess.run(
        ["sh", str(DEPLOY / "make-certs.sh"), str(certs), NAMESPACE], check=True, capture_output=True
    )
    reward_name = reward_pb2.DESCRIPTOR.services_by_name["RewardService"].full_name
    service = registration(
        reward_pb2_grpc.RewardServiceServicer(),
        reward_pb2_grpc.add_RewardServiceServicer_to_server,
        reward_name,
    )
    tls = TLSConfig(cert=certs / "tls.crt", key=certs / "tls.key")

    async def scenario() -> list[subprocess.CompletedProcess[str]]:
        running = await start_server([service], ServerConfig(host="127.0.0.1", port=0, tls=tls))
        address = f"127.0.0.1:{running.port}"
        ca = str(certs / "ca.crt")
        try:
            names = ["localhost", "reward", f"reward.{NAMESPACE}.svc", f"rollout-1.rollout.{NAMESPACE}.svc"]
            calls = [("--service", reward_name, "--server-name", name) for name in names]
            calls += [("--service", "grpo.v1.Unknown", "--server-name", "localhost")]
            calls += [("--server-name", "not-in-the-cert.example")]
            return [
                await asyncio.to_thread(run_probe, "--address", address, "--ca", ca, *call) for call in calls
            ]
        finally:
            await running.server.stop(None)

    *good, unknown, wrong_name = asyncio.run(scenario())
    assert [r.returncode for r in good] == [0, 0, 0, 0], [r.stdout + r.stderr for r in good]
    assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stdout
    assert wrong_name.returncode == 1 and "UNAVAILABLE" in wrong_name.stdout
