"""Every model variant a replay may ask for works in the container: built by the Dockerfile's own build
line, then loaded from a cache directory the service user cannot write (the pods run as user 10001 with a
read-only root filesystem and MODEL_CACHE_DIR in the image, k8s/base)."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import yaml

from ops import replay
from shared.config import PROJECT_ROOT

SERVICE_UID = 10001  # USER in the Dockerfile, runAsUser in k8s


def replay_model_choices() -> list[str]:
    """The --model choices of `python -m ops.replay`, from its own argument parser."""
    captured: dict[str, argparse.ArgumentParser] = {}

    def capture(parser, *args, **kwargs):
        captured["parser"] = parser
        raise SystemExit(0)

    with mock.patch.object(argparse.ArgumentParser, "parse_args", capture), pytest.raises(SystemExit):
        replay.main([])
    (action,) = [a for a in captured["parser"]._actions if a.dest == "model"]
    return list(action.choices)


def dockerfile_model_build() -> tuple[str, str]:
    """(MODEL_CACHE_DIR, the python -c program) of the Dockerfile's model build step."""
    text = re.sub(r"\\\n", " ", (PROJECT_ROOT / "Dockerfile").read_text())
    (cache_dir,) = re.findall(r"^ENV MODEL_CACHE_DIR=(\S+)", text, re.M)
    (program,) = re.findall(r'^RUN python -c "(.*load_text_embedder.*)"\s*$', text, re.M)
    return cache_dir, program


def without_write_override() -> list[str]:
    """A command prefix under which file permissions bind, as they bind user 10001 in the pod. Root
    ignores them (CAP_DAC_OVERRIDE, CAP_FOWNER): drop those capabilities for the child (setpriv,
    util-linux); switching to uid 10001 is no option where the interpreter lives under /root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv, "running as root needs setpriv (util-linux) to drop CAP_DAC_OVERRIDE for this check"
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search,-fowner"]


def test_the_models_the_image_builds_load_read_only_as_the_service_user(tmp_path):
    cache_dir, program = dockerfile_model_build()
    models = tmp_path / "models"
    subprocess.run([sys.executable, "-c", program.replace(f"'{cache_dir}'", repr(str(models)))],
                   cwd=PROJECT_ROOT, check=True, timeout=900)
    # Read-only for everyone, owned by someone else (root in the image).
    for path in [models, *models.iterdir()]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    probe = subprocess.run([*without_write_override(), sys.executable, "-c",
                            f"open({str(models / 'probe')!r}, 'w')"], capture_output=True, text=True)
    assert probe.returncode != 0 and "PermissionError" in probe.stderr, "the cache directory must be read-only"
    variants = replay_model_choices()
    assert set(variants) == {"fp32", "int8"}
    check = ("import sys; from shared.embedding import load_text_embedder as load; "
             "embedder = load(sys.argv[1], quantize=sys.argv[2] == 'int8'); "
             "print(embedder.model_id, embedder.embed(['a post about cooking']).shape)")
    for variant in variants:
        result = subprocess.run([*without_write_override(), sys.executable, "-c", check, str(models), variant],
                                cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"--model {variant} in the container: {result.stderr[-2000:]}"
        assert f"onnx-{variant}" in result.stdout and "(1, 384)" in result.stdout, result.stdout


def test_pods_read_the_models_from_the_image_as_the_service_user():
    """MODEL_CACHE_DIR in k8s is the image's directory, no volume hides it, and the root filesystem
    (where it lives) is read-only for user 10001: only what the image build made is there."""
    cache_dir, _ = dockerfile_model_build()
    rendered = subprocess.run(["kubectl", "kustomize", str(PROJECT_ROOT / "k8s" / "overlays" / "prod")],
                              capture_output=True, text=True, check=True).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    (config,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "influential-config"]
    assert config["data"]["MODEL_CACHE_DIR"] == cache_dir
    for deployment in (d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] != "redis-cache"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == SERVICE_UID, deployment["metadata"]["name"]
        for container in pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
            assert not any(Path(cache_dir).is_relative_to(m) for m in mounts), mounts
