"""The gate on worse classification (ops/gate.py) with the real model and real Redis: a
deliberately worse taxonomy is refused, --override lets it through (and says so), people's
corrections join the golden set, and the function replay --stage classify calls gates a directory."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import redis
import yaml

from ops.eval import CachedEmbedder, load_taxonomy
from ops.gate import accepted, golden_set, main, replay_gate
from shared.classification.fewshot import FewShotStore
from shared.config import PROJECT_ROOT
from shared.embedding import load_text_embedder
from tests.conftest import MODEL_CACHE_DIR

DEFAULT_TAXONOMY = PROJECT_ROOT / "config" / "taxonomies" / "default.yaml"
REDIS_DB = 6  # a database of its own


@pytest.fixture(scope="module")
def embed():
    return CachedEmbedder(load_text_embedder(MODEL_CACHE_DIR).embed)


@pytest.fixture
def client(infra):
    client = redis.Redis(host="127.0.0.1", port=infra.config.redis_port, db=REDIS_DB)
    client.flushdb()
    return client


@pytest.fixture
def redis_url(infra):
    return f"redis://127.0.0.1:{infra.config.redis_port}/{REDIS_DB}"


def worse_copy(directory):
    """The default taxonomy with food's and travel's, and comedy's and music's, material swapped:
    a plausible editing mistake that makes four verticals wrong."""
    data = yaml.safe_load(DEFAULT_TAXONOMY.read_text())
    by_name = {v["name"]: v for v in data["verticals"]}
    for a, b in (("food", "travel"), ("comedy", "music")):
        for key in ("description", "keywords"):
            by_name[a][key], by_name[b][key] = by_name[b][key], by_name[a][key]
    data["version"] = "99"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "default.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_worse_taxonomy_is_refused_and_override_accepts_it(embed, client, redis_url, tmp_path, capsys):
    worse = worse_copy(tmp_path / "worse")
    args = ["--candidate", str(worse), "--active", str(DEFAULT_TAXONOMY), "--redis-url", redis_url]
    assert main(args, embed=embed) == 3
    out = capsys.readouterr()
    assert "REFUSED" in out.out and "refused: macro F1 dropped" in out.err
    assert accepted(client, "default") is None  # nothing was accepted
    assert main([*args, "--override"], embed=embed) == 0
    assert "OVERRIDDEN (--override)" in capsys.readouterr().out
    assert accepted(client, "default").version == "99"
    # The unchanged taxonomy against itself passes.
    assert main(["--candidate", str(DEFAULT_TAXONOMY), "--active", str(DEFAULT_TAXONOMY), "--redis-url", redis_url],
                embed=embed) == 0


def test_corrections_join_the_golden_set(embed, client):
    taxonomy = load_taxonomy(DEFAULT_TAXONOMY)
    plain = golden_set(taxonomy, embed)
    assert len(plain.rows) == 170 and plain.corrections == 0
    fewshot = FewShotStore(client)
    vector = np.asarray(embed(["Slow-cooker lentil soup for busy weeknights"])[0], dtype=np.float32)
    fewshot.add("default", "food", 4242, vector, at_ms=1)
    fewshot.add("default", "no_such_vertical", 4243, vector, at_ms=2)  # not a vertical: ignored
    with_corrections = golden_set(taxonomy, embed, fewshot)
    assert with_corrections.corrections == 1 and len(with_corrections.rows) == 171
    assert with_corrections.rows[-1].labels == ("food",)
    assert np.allclose(with_corrections.vectors[-1], vector)


def test_replay_classify_gate_accepts_then_refuses_a_worse_directory(client, redis_url, tmp_path, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("MODEL_CACHE_DIR", str(MODEL_CACHE_DIR))
    good = tmp_path / "good"
    good.mkdir()
    shutil.copy(DEFAULT_TAXONOMY, good / "default.yaml")
    assert replay_gate(good, override=False)  # first run: nothing accepted yet, accepted now
    assert accepted(client, "default") == load_taxonomy(DEFAULT_TAXONOMY)
    worse_copy(tmp_path / "worse")
    assert not replay_gate(tmp_path / "worse", override=False)
    assert accepted(client, "default").version != "99"
    assert replay_gate(tmp_path / "worse", override=True)
