"""Vertical labels on indexed posts: tier 1 at write time, tier-2 opinions applied only while they
still describe the post (real model, real edge engine, two taxonomies side by side)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.indexer.core import PostIndexer, post_point_id
from shared.classification.labelling import TierOneLabeller
from shared.classification.taxonomy import TaxonomyCatalog, VerticalLabel
from shared.embedding import load_text_embedder
from shared.events import (
    AccountFields,
    AccountPurge,
    EmbeddedPostUpsert,
    PostDelete,
    PostLabels,
    PostRecord,
    PostUpsert,
    SourcePosition,
    content_hash,
)
from shared.vectorstore import EdgeVectorStore, SearchFilter, VerticalCondition
from tests.conftest import MODEL_CACHE_DIR

FOOD = "Grandma's lasagna recipe: slow-cooked ragu, fresh pasta sheets and a lot of parmesan"
GAMES = "Speedrunning the new Zelda: every glitch and boss skip, controller cam included"
TONE = {"name": "tone", "version": "3", "verticals": [
    {"name": "upbeat", "description": "Happy, excited, celebrating, joyful, fun and positive posts."},
    {"name": "critical", "description": "Complaints, angry reviews, warnings and negative criticism."},
]}


@pytest.fixture(scope="module")
def embedder():
    return load_text_embedder(MODEL_CACHE_DIR)


@pytest.fixture(scope="module")
def labeller(embedder, tmp_path_factory) -> TierOneLabeller:
    directory = tmp_path_factory.mktemp("taxonomies")
    # The demo taxonomy with a low threshold of its own, so these tests are about what the
    # indexer does with labels, not about where calibration puts the thresholds.
    default = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "taxonomies" / "default.yaml").read_text())
    default = {**default, "version": "1", "verticals": [{**v, "threshold": 0.05} for v in default["verticals"]]}
    (directory / "default.yaml").write_text(yaml.safe_dump(default))
    (directory / "tone.yaml").write_text(yaml.safe_dump(TONE))
    return TierOneLabeller(TaxonomyCatalog.load(directory), embedder.embed)


@pytest.fixture
def indexer(tmp_path, labeller):
    store = EdgeVectorStore(tmp_path / "edge")
    yield PostIndexer(store, "posts", 384, labeller)
    store.close()


def upsert(embedder, post_id: int, text: str, pos: int, views: int = 0) -> EmbeddedPostUpsert:
    post = PostRecord(id=post_id, account_id=7, platform="youtube", title=text, published_at=1, views=views)
    event = PostUpsert(post=post, account=AccountFields(handle="h"), position=SourcePosition(ts_ms=1, pos=pos))
    return EmbeddedPostUpsert.build(event, "m", embedder.embed([post.embedding_text()])[0])


def opinion(post_id: int, text: str, verticals: list[str], taxonomy: str = "default",
            version: str = "1") -> PostLabels:
    labels = [VerticalLabel(taxonomy=taxonomy, vertical=v, confidence=0.9, tier="llm") for v in verticals]
    post = PostRecord(id=post_id, account_id=7, platform="youtube", title=text, published_at=1)
    return PostLabels(post_id=post_id, account_id=7, content_hash=content_hash(post.embedding_text()),
                      taxonomy=taxonomy, taxonomy_version=version, labels=labels, model="judge-1")


def labels_of(indexer: PostIndexer, post_id: int) -> dict[str, list[tuple[str, str]]]:
    """taxonomy -> [(vertical, tier)]"""
    [point] = indexer.store.retrieve("posts", [post_point_id(post_id)])
    found: dict[str, list[tuple[str, str]]] = {}
    for label in point.payload["verticals"]:
        found.setdefault(label["taxonomy"], []).append((label["vertical"], label["tier"]))
    assert sorted(point.payload["vertical_labels"]) == sorted(
        f"{t}:{v}" for t, pairs in found.items() for v, _ in pairs)
    return found


def test_tier_one_labels_every_post_at_write_time_in_every_taxonomy(indexer, embedder):
    indexer.apply([upsert(embedder, 1, FOOD, 10), upsert(embedder, 2, GAMES, 11)])
    assert ("food", "embedding") in labels_of(indexer, 1)["default"]
    assert ("gaming", "embedding") in labels_of(indexer, 2)["default"]
    [point] = indexer.store.retrieve("posts", [post_point_id(1)])
    assert point.payload["verticals"][0]["version"] == "1"
    assert point.payload["content_hash"] == content_hash(FOOD)
    # The labels are what vertical filters search on.
    gaming = SearchFilter(verticals=VerticalCondition(taxonomy="default", verticals=["gaming"]))
    assert list(indexer.store.scroll_ids("posts", gaming)) == [post_point_id(2)]


def test_a_second_opinion_replaces_only_its_taxonomy(indexer, embedder):
    indexer.apply([upsert(embedder, 1, FOOD, 10)])
    tone_before = labels_of(indexer, 1).get("tone")
    indexer.apply([opinion(1, FOOD, ["travel", "food"])])
    labels = labels_of(indexer, 1)
    assert sorted(labels["default"]) == [("food", "llm"), ("travel", "llm")]
    assert labels.get("tone") == tone_before


def test_an_opinion_about_older_text_or_an_old_taxonomy_version_is_dropped(indexer, embedder):
    indexer.apply([upsert(embedder, 1, GAMES, 10)])
    indexer.apply([opinion(1, "an earlier title of the post", ["pets"])])  # text changed since
    indexer.apply([opinion(1, GAMES, ["pets"], version="0")])  # taxonomy changed since
    indexer.apply([opinion(1, GAMES, ["upbeat"], taxonomy="tone", version="2")])
    labels = labels_of(indexer, 1)
    assert ("pets", "llm") not in labels["default"] and ("gaming", "embedding") in labels["default"]
    assert all(tier == "embedding" for _, tier in labels.get("tone", []))


def test_reindexing_the_same_text_keeps_the_opinion_but_new_text_drops_it(indexer, embedder):
    indexer.apply([upsert(embedder, 1, FOOD, 10), opinion(1, FOOD, ["travel"])])
    indexer.apply([upsert(embedder, 1, FOOD, 20, views=1000)])  # a views update: same text
    assert labels_of(indexer, 1)["default"] == [("travel", "llm")]
    indexer.apply([upsert(embedder, 1, GAMES, 30)])  # the text changed: tier 1 decides again
    assert ("gaming", "embedding") in labels_of(indexer, 1)["default"]


def test_an_opinion_in_the_same_batch_as_its_upsert_applies_in_either_order(indexer, embedder):
    indexer.apply([opinion(1, FOOD, ["travel"]), upsert(embedder, 1, FOOD, 10)])
    indexer.apply([upsert(embedder, 2, FOOD, 11), opinion(2, FOOD, ["travel"])])
    assert labels_of(indexer, 1)["default"] == labels_of(indexer, 2)["default"] == [("travel", "llm")]


def test_an_opinion_never_brings_back_a_deleted_or_purged_post(indexer, embedder):
    position = SourcePosition(ts_ms=1, pos=50)
    indexer.apply([upsert(embedder, 1, FOOD, 10), PostDelete(post_id=1, account_id=7, position=position),
                   opinion(1, FOOD, ["travel"])])
    indexer.apply([opinion(1, FOOD, ["travel"])])
    indexer.apply([upsert(embedder, 2, FOOD, 11), AccountPurge(account_id=7, reason="gone", position=position)])
    indexer.apply([opinion(2, FOOD, ["travel"]), opinion(3, FOOD, ["travel"])])
    assert indexer.store.count("posts") == 0
