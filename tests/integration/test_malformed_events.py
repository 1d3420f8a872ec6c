"""Hypothesis-generated malformed events on every input topic, through each service's real batch
handler with its real dependencies (Redis state, the model, the edge engine): every malformed
event ends in the dead letters with a reason, none raises, valid events in the same batch go on."""

from __future__ import annotations

import itertools

import numpy as np
import orjson
import pytest
import redis
from confluent_kafka import Message
from hypothesis import HealthCheck, given, settings, strategies as st

from services.embedder.core import PostEmbedding
from services.embedder.main import EmbedderService
from services.indexer.core import PostIndexer, post_point_id
from services.indexer.service import IndexerService
from services.viability.core import ViabilityFilter, ViabilityRules
from services.viability.main import ViabilityService
from services.viability.state import RedisViabilityState
from shared.cache import EmbeddingCache
from shared.config import KafkaSettings
from shared.embedding import load_text_embedder
from shared.events import AccountFields, EmbeddedPostUpsert, PostRecord, PostUpsert, SourcePosition, encode
from shared.vectorstore import EdgeVectorStore
from tests.conftest import MODEL_CACHE_DIR

KAFKA = KafkaSettings(topic_prefix="fuzz", source_database="fuzz")
_ids = itertools.count(1)
EXAMPLES = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def valid_post(post_id: int, account_id: int = 1) -> dict:
    return {"id": post_id, "account_id": account_id, "platform": "youtube", "title": f"post {post_id}",
            "description": "d", "published_at": 1_700_000_000_000}


def envelope(after: dict, op: str = "c") -> dict:
    return {"before": None, "after": after, "op": op, "ts_ms": 1,
            "source": {"ts_ms": 1, "db": "fuzz", "table": "posts", "file": "mariadb-bin.000001", "pos": 4}}


def wrap(document) -> dict:
    return {"schema": {"type": "struct", "optional": False}, "payload": document}


# --- malformed Debezium values: each strategy is invalid by construction --------------------

not_json = st.binary(min_size=1, max_size=200).filter(lambda b: _not_json(b))
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
not_an_object = st.one_of(int64, st.text(max_size=20), st.lists(int64, max_size=3)).map(orjson.dumps)
missing_field = st.sampled_from(["op", "source"]).map(
    lambda field: orjson.dumps({k: v for k, v in envelope(valid_post(1)).items() if k != field}))
unknown_op = st.text(min_size=1, max_size=3).filter(lambda op: op not in "curd" or len(op) != 1).map(
    lambda op: orjson.dumps(envelope(valid_post(1), op=op)))
wrong_types = st.sampled_from([("id", "seven"), ("account_id", {"x": 1}), ("title", 42), ("published_at", "soon"),
                               ("platform", None)]).map(
    lambda pair: orjson.dumps(envelope({**valid_post(1), pair[0]: pair[1]})))
huge_title = st.integers(min_value=20_001, max_value=2_000_000).map(
    lambda n: orjson.dumps(envelope({**valid_post(1), "title": "x" * n})))
bad_utf8 = st.just(b'{"op": "c", "after": {"title": "\xff\xfe"}, "source": {"ts_ms": 1, "db": "fuzz"}}')
malformed_change = st.one_of(not_json, not_an_object, missing_field, unknown_op, wrong_types, huge_title, bad_utf8)
malformed_change_any_flavour = st.one_of(
    malformed_change,
    st.one_of(missing_field, unknown_op, wrong_types).map(lambda raw: orjson.dumps(wrap(orjson.loads(raw)))),
)


def _not_json(raw: bytes) -> bool:
    try:
        orjson.loads(raw)
        return False
    except orjson.JSONDecodeError:
        return True


def message(topic: str, value: bytes | None, offset: int) -> Message:
    return Message(topic=topic, partition=0, offset=offset, key=b'{"id": 1}', value=value)


def assert_dead_lettered(result, bad: list[Message]) -> None:
    letters = {letter.message.offset(): letter for letter in result.dead_letters}
    assert sorted(letters) == sorted(m.offset() for m in bad)
    assert all(str(letter.error) for letter in letters.values())


# --- viability ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_client(infra):
    return redis.Redis(host="127.0.0.1", port=infra.config.redis_port)


@given(bad=st.lists(malformed_change_any_flavour, min_size=1, max_size=5))
@EXAMPLES
def test_viability_dead_letters_malformed_changes_and_processes_the_rest(redis_client, bad):
    state = RedisViabilityState(redis_client, namespace=f"fuzz{next(_ids)}")
    service = ViabilityService(KAFKA, ViabilityFilter(state, ViabilityRules(min_followers=0, min_posts=1, active_within_days=100_000)))
    account = orjson.dumps({**envelope({"id": 1, "platform": "youtube", "handle": "h", "followers": 5}),
                            "source": {"ts_ms": 1, "db": "fuzz", "table": "accounts"}})
    good_posts = [orjson.dumps(envelope(valid_post(n))) for n in (1, 2)]
    values = [good_posts[0], *bad, account, orjson.dumps(wrap(orjson.loads(good_posts[1])))]
    messages = [message(KAFKA.accounts_topic if v == account else KAFKA.posts_topic, v, i)
                for i, v in enumerate(values)]
    result = service.handle_batch(messages)
    assert_dead_lettered(result, messages[1:1 + len(bad)])
    assert state.post_stats(1)[0] == 2  # both valid posts (plain and schema-wrapped) were counted
    upserts = [orjson.loads(o.value) for o in result.outputs if o.topic == KAFKA.viable_posts_topic]
    assert {u["post"]["id"] for u in upserts if u["kind"] == "post.upsert"} == {2}


# --- embedder and indexer: malformed pipeline events -------------------------------------------

malformed_pipeline = st.one_of(
    not_json, not_an_object,
    st.sampled_from(["post.upsert", "post.embedded", "post.delete", "account.purge", "nope"]).map(
        lambda kind: orjson.dumps({"kind": kind, "post_id": "x"})),
    st.integers(min_value=20_001, max_value=300_000).map(lambda n: orjson.dumps(
        {"kind": "post.upsert", "post": {**valid_post(1), "title": "y" * n}, "account": {"handle": "h"},
         "position": {"ts_ms": 1}})),
)


def upsert(post_id: int) -> PostUpsert:
    return PostUpsert(post=PostRecord(**valid_post(post_id)), account=AccountFields(handle="h"),
                      position=SourcePosition(ts_ms=1))


@pytest.fixture(scope="module")
def embedder():
    return load_text_embedder(MODEL_CACHE_DIR)


@given(bad=st.lists(malformed_pipeline, min_size=1, max_size=4))
@EXAMPLES
def test_embedder_dead_letters_malformed_events_and_embeds_the_rest(embedder, redis_client, bad):
    service = EmbedderService(KAFKA, PostEmbedding(embedder, EmbeddingCache(redis_client, embedder.model_id)))
    values = [encode(upsert(1)), *bad, encode(upsert(2))]
    messages = [message(KAFKA.viable_posts_topic, v, i) for i, v in enumerate(values)]
    result = service.handle_batch(messages)
    assert_dead_lettered(result, messages[1:-1])
    embedded = [orjson.loads(o.value) for o in result.outputs]
    assert [e["post"]["id"] for e in embedded] == [1, 2] and all(e["kind"] == "post.embedded" for e in embedded)


@pytest.fixture(scope="module")
def indexer(tmp_path_factory):
    store = EdgeVectorStore(tmp_path_factory.mktemp("fuzz-edge"))
    yield PostIndexer(store, "posts", 384)
    store.close()


wrong_vector = st.integers(min_value=0, max_value=1000).filter(lambda n: n != 384).map(
    lambda n: encode(EmbeddedPostUpsert.build(upsert(3), "m", np.ones(n, dtype="float32"))))


@given(bad=st.lists(st.one_of(malformed_pipeline, wrong_vector), min_size=1, max_size=4))
@EXAMPLES
def test_indexer_dead_letters_malformed_events_and_indexes_the_rest(indexer, bad):
    vector = np.ones(384, dtype="float32") / np.sqrt(384)
    good = [EmbeddedPostUpsert.build(upsert(post_id), "m", vector) for post_id in (next(_ids), next(_ids))]
    values = [encode(good[0]), *bad, encode(good[1])]
    messages = [message(KAFKA.embedded_posts_topic, v, i) for i, v in enumerate(values)]
    result = IndexerService(indexer).handle_batch(messages)
    assert_dead_lettered(result, messages[1:-1])
    stored = indexer.store.retrieve("posts", [post_point_id(e.post.id) for e in good])
    assert len(stored) == 2
