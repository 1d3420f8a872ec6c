"""Validate the rendered k8s overlays' custom resources against the operators' published CRDs.

    python -m ops.deploy_check --crds .dev/crds k8s/base k8s/overlays/dev k8s/overlays/prod

`make deploy-check` downloads the CRD bundles of the operator versions the manifests are written for
(Strimzi's release asset strimzi-crds-<version>.yaml, KEDA's keda-<version>-crds.yaml) into .dev/crds
(never committed) and runs this: every Strimzi/KEDA object is validated against the `openAPIV3Schema`
of the CRD version it names, which must be served. Unknown fields fail (the API server would prune them
silently from a structural schema, so a typo would do nothing). The test suite checks the same objects
against the CRD facts restated in tests/unit/test_deploy_config.py, which needs no network.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml


def to_json_schema(schema: Any) -> Any:
    """An OpenAPI v3 schema of a CRD as JSON Schema: Kubernetes' extensions mapped, and objects with
    declared properties closed unless they preserve unknown fields."""
    if isinstance(schema, list):
        return [to_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if schema.get("x-kubernetes-int-or-string"):
        return {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    converted = {key: to_json_schema(value) for key, value in schema.items()
                 if not key.startswith("x-kubernetes-") and key != "nullable"}
    if schema.get("nullable") and "type" in converted:
        converted["type"] = [converted["type"], "null"]
    if (converted.get("type") == "object" and "properties" in converted and "additionalProperties" not in converted
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        converted["additionalProperties"] = False
    return converted


def load_crd_schemas(directory: Path) -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> JSON schema, for every served version of every CRD under directory."""
    schemas: dict[tuple[str, str], dict] = {}
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                if version.get("served"):
                    schema = to_json_schema(version["schema"]["openAPIV3Schema"])
                    # metadata is validated by the API server itself, not by the CRD schema.
                    schema["properties"] = {**schema.get("properties", {}), "metadata": {"type": "object"}}
                    schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def validate(docs: list[dict], schemas: dict[tuple[str, str], dict]) -> list[str]:
    groups = {api.split("/")[0] for api, _ in schemas}
    errors = []
    for doc in docs:
        key = (doc["apiVersion"], doc["kind"])
        if key[0].split("/")[0] not in groups:
            continue
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if key not in schemas:
            errors.append(f"{name}: {key[0]} is not a served version of the installed CRDs")
            continue
        for error in jsonschema.Draft7Validator(schemas[key]).iter_errors(doc):
            errors.append(f"{name}: {error.message[:300]} at {'/'.join(map(str, error.path))}")
    return errors


def render(overlay: str) -> list[dict]:
    result = subprocess.run(["kubectl", "kustomize", overlay], capture_output=True, text=True, check=True)
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.deploy_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--crds", type=Path, required=True, help="directory of CRD YAML files")
    parser.add_argument("overlays", nargs="+")
    args = parser.parse_args(argv)
    schemas = load_crd_schemas(args.crds)
    if not schemas:
        print(f"no CustomResourceDefinitions under {args.crds}", file=sys.stderr)
        return 2
    failed = False
    for overlay in args.overlays:
        errors = validate(render(overlay), schemas)
        for error in errors:
            print(f"{overlay}: {error}", file=sys.stderr)
        failed |= bool(errors)
        print(f"{overlay}: {'FAILED' if errors else 'ok'} against {len(schemas)} CRD versions")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
