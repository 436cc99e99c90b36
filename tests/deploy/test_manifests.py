"""The container image and the Kubernetes manifests agree with each other and with the engine.

Schema validation of the manifests (``kubernetes-validate``, the Prometheus Operator's CRDs) and
hadolint run in ``.ci/run`` with tools of their own; these tests check what no schema knows: the
port is the same everywhere, the probes hit the health endpoints, the policies are mounted so a
ConfigMap update reloads them, the settings pass the engine's own validation.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from policy_engine.cli import build_parser
from policy_engine.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "kubernetes" / "base"
OVERLAY = DEPLOY / "kubernetes" / "overlays" / "example"
DOCKERFILE = DEPLOY / "Dockerfile"


def load(path: Path) -> dict[str, Any]:
    """The one YAML document in ``path``."""
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data


def env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of a kustomize env file (comments and blank lines skipped)."""
    pairs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def settings_env() -> dict[str, str]:
    """The environment a pod of the example overlay gets from its ConfigMap."""
    env = env_file(BASE / "engine.env")
    (generator,) = (
        g
        for g in load(OVERLAY / "kustomization.yaml")["configMapGenerator"]
        if g["name"] == "policy-engine-config"
    )
    assert generator["behavior"] == "merge"
    env.update(literal.split("=", 1) for literal in generator["literals"])
    return env


def container() -> dict[str, Any]:
    """The consume container of the Deployment."""
    (only,) = load(BASE / "deployment.yaml")["spec"]["template"]["spec"]["containers"]
    return only


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_every_kustomization_names_files_that_exist():
    """Resources, env files and generated files of base and overlay are all there."""
    for directory in (BASE, OVERLAY):
        kustomization = load(directory / "kustomization.yaml")
        for resource in kustomization.get("resources", []):
            assert (directory / resource).exists(), resource
        for generator in kustomization.get("configMapGenerator", []):
            for name in [*generator.get("envs", []), *generator.get("files", [])]:
                assert (directory / name).is_file(), name


def test_the_overlay_ships_every_policy_file_without_a_name_hash():
    """The policies ConfigMap lists each file of policies/ and keeps its name across changes."""
    (generator,) = (
        g
        for g in load(OVERLAY / "kustomization.yaml")["configMapGenerator"]
        if g["name"] == "policy-engine-policies"
    )
    listed = sorted((OVERLAY / name).resolve() for name in generator["files"])
    policies = ROOT / "policies"
    assert listed == sorted([*policies.glob("*.yaml"), *policies.glob("*.yml")])
    assert generator["options"]["disableNameSuffixHash"] is True


def test_policies_are_mounted_as_a_directory_where_the_engine_reads_them():
    """The ConfigMap is a read-only directory mount at POLICY_PATHS, never a subPath."""
    spec = load(BASE / "deployment.yaml")["spec"]["template"]["spec"]
    (volume,) = (v for v in spec["volumes"] if v["name"] == "policies")
    assert volume["configMap"]["name"] == "policy-engine-policies"
    (mount,) = (m for m in container()["volumeMounts"] if m["name"] == "policies")
    assert "subPath" not in mount
    assert mount["readOnly"] is True
    assert settings_env()["POLICY_PATHS"] == mount["mountPath"]
    assert settings_env()["POLICY_WATCH"] == "true"


def test_the_settings_pass_the_engines_validation():
    """The ConfigMap's variables are valid engine settings, with a shared guardrail store."""
    env = settings_env()
    settings = Settings.from_env({**env, "REGISTRY_TOKEN": "from-the-secret"})
    assert settings.guardrail_store is not None
    assert settings.guardrail_store.startswith("redis://")
    assert "REGISTRY_TOKEN" not in env_file(BASE / "engine.env")


def test_consume_accepts_the_deployments_arguments():
    """The container's arguments, with the ConfigMap's values filled in, parse as consume's."""
    env = settings_env()
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg) for arg in container()["args"]]
    parsed = build_parser().parse_args(["consume", *args])
    assert parsed.source.startswith("redis://")
    assert "group=" in parsed.source


def test_registry_token_comes_from_a_secret():
    """REGISTRY_TOKEN is read from a Secret, not written in any ConfigMap."""
    (token,) = (e for e in container()["env"] if e["name"] == "REGISTRY_TOKEN")
    assert token["valueFrom"]["secretKeyRef"]["name"] == "policy-engine-registry"
    assert "REGISTRY_TOKEN" not in settings_env()


def test_probes_use_the_health_endpoints_on_the_metrics_port():
    """Liveness and start-up ask /healthz, readiness /readyz, all on the named metrics port."""
    spec = container()
    assert spec["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert spec["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def test_the_metrics_port_is_the_same_everywhere():
    """METRICS_PORT, the container port, the Service, the ServiceMonitor and the image agree."""
    port = int(settings_env()["METRICS_PORT"])
    (container_port,) = container()["ports"]
    assert (container_port["name"], container_port["containerPort"]) == ("metrics", port)
    (service_port,) = load(BASE / "service.yaml")["spec"]["ports"]
    assert (service_port["port"], service_port["targetPort"]) == (port, "metrics")
    (endpoint,) = load(BASE / "servicemonitor.yaml")["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    instructions = dockerfile_instructions()
    assert ("EXPOSE", str(port)) in instructions
    assert any(i == "ENV" and f"METRICS_PORT={port}" in rest for i, rest in instructions)


def test_selectors_find_the_pods_and_the_service():
    """Service, PodDisruptionBudget and ServiceMonitor select what they are meant to."""
    deployment = load(BASE / "deployment.yaml")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = load(BASE / "service.yaml")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    budget = load(BASE / "poddisruptionbudget.yaml")
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    monitor = load(BASE / "servicemonitor.yaml")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )


def test_pods_run_unprivileged_with_limits():
    """Non-root as the image's user, read-only root filesystem, no capabilities, resources set."""
    pod = load(BASE / "deployment.yaml")["spec"]["template"]["spec"]
    (user,) = (rest for i, rest in dockerfile_instructions() if i == "USER")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}" == user
    security = container()["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    resources = container()["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert "memory" in resources["limits"]


def test_the_image_is_built_in_two_stages_and_runs_consume_as_a_user():
    """A compiler stage builds the wheel; the slim final stage runs consume as a non-root uid."""
    instructions = dockerfile_instructions()
    stages = [rest for i, rest in instructions if i == "FROM"]
    assert len(stages) == 2
    assert stages[0].endswith(" AS build")
    assert "-slim" in stages[1]
    (user,) = (rest for i, rest in instructions if i == "USER")
    uid, _, gid = user.partition(":")
    assert int(uid) > 0
    assert int(gid) > 0
    (entrypoint,) = (rest for i, rest in instructions if i == "ENTRYPOINT")
    assert json.loads(entrypoint) == ["policy-engine", "consume"]


@pytest.mark.parametrize("pattern", ["engine/**/*.so", "engine/**/_compiled.json"])
def test_the_build_context_leaves_local_extensions_out(pattern):
    """An editable install's extensions next to the sources never reach the image's wheel."""
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    assert pattern in ignored
