"""Validate Kubernetes manifests offline: built-in kinds against the Kubernetes API schemas, the
Prometheus Operator's kinds against models generated from its CRDs, alert rules with promtool.

    python deploy/kubernetes/validate.py --kubernetes-version 1.33.0 --promtool promtool \\
        rendered.yaml [more.yaml ...]

Each file may hold several YAML documents (``kubectl kustomize`` output, or the resource files
themselves; ``Kustomization`` documents are skipped). Needs ``kubernetes-validate`` (which ships
the Kubernetes JSON schemas) and ``cloudcoil-models-prometheus-operator`` (pydantic models of
the ``monitoring.coreos.com`` CRDs); ``.ci/run`` installs both into a tools venv. Prints one
line per resource and exits 1 if any is invalid.

- Built-in kinds (Deployment, Service, ...): ``kubernetes_validate.validate(..., strict=True)``,
  which also refuses properties the API does not know.
- ServiceMonitor and PrometheusRule: the CRD models parse the resource, and it must come back
  from them unchanged, so a misspelt or unknown field (which a real API server would prune or
  refuse) is reported too.
- PrometheusRule: its ``spec`` must also pass ``promtool check rules``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

#: Prometheus Operator kinds checked against its CRD models, by (apiVersion, kind).
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
#: Documents that are build input, not resources.
SKIPPED_KINDS = {"Kustomization", "Component"}


def _differences(want: Any, got: Any, path: str = "") -> list[str]:
    """Where ``got`` (the model's dump) lost or changed something of ``want`` (the input)."""
    if isinstance(want, dict) and isinstance(got, dict):
        out: list[str] = []
        for key, value in want.items():
            if key not in got:
                out.append(f"{path}/{key}: not a field of the CRD")
            else:
                out.extend(_differences(value, got[key], f"{path}/{key}"))
        return out
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        pairs = enumerate(zip(want, got, strict=True))
        return [d for i, (w, g) in pairs for d in _differences(w, g, f"{path}/{i}")]
    return [] if want == got else [f"{path}: {want!r} read as {got!r}"]


def check_builtin(doc: dict[str, Any], version: str) -> list[str]:
    """Problems of a built-in kind against the Kubernetes ``version`` schemas (strict)."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = "/".join(str(p) for p in exc.path)
        return [f"/{where}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [exc.message]
    return []


def check_crd(doc: dict[str, Any]) -> list[str]:
    """Problems of a Prometheus Operator resource against the models of its CRDs."""
    import pydantic
    from cloudcoil.models.prometheus_operator import v1

    model = {"ServiceMonitor": v1.ServiceMonitor, "PrometheusRule": v1.PrometheusRule}[doc["kind"]]
    try:
        parsed = model.model_validate(doc)
    except pydantic.ValidationError as exc:
        return [f"/{'/'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    return _differences(doc, parsed.model_dump(by_alias=True, exclude_unset=True, mode="json"))


def check_rules(doc: dict[str, Any], promtool: str) -> list[str]:
    """``promtool check rules`` on a PrometheusRule's groups."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", encoding="utf-8") as rules:
        yaml.safe_dump(doc["spec"], rules)
        rules.flush()
        done = subprocess.run(
            [promtool, "check", "rules", rules.name], capture_output=True, text=True, check=False
        )
    if done.returncode == 0:
        return []
    return [f"promtool: {line}" for line in (done.stdout + done.stderr).splitlines() if line]


def main(argv: list[str] | None = None) -> int:
    """Validate every resource of the files named; 0 if all are valid."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--kubernetes-version", required=True, metavar="X.Y.Z")
    parser.add_argument("--promtool", default="promtool", help="promtool to check alert rules")
    args = parser.parse_args(argv)
    failed = 0
    for path in args.files:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not doc or doc.get("kind") in SKIPPED_KINDS:
                continue
            name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            if (doc.get("apiVersion"), doc.get("kind")) in CRD_KINDS:
                against = "its CRD"
                problems = check_crd(doc)
                if doc["kind"] == "PrometheusRule" and not problems:
                    problems = check_rules(doc, args.promtool)
            else:
                against = f"Kubernetes {args.kubernetes_version}"
                problems = check_builtin(doc, args.kubernetes_version)
            print(f"{'invalid' if problems else 'ok':7} {path}: {name} (against {against})")
            for problem in problems:
                print(f"          {problem}")
            failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
