"""Pure parts of the query API and its shared helpers: no servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.query.accounts import group_by_account
from services.query.app import QuerySettings
from services.query.cursor import decode_cursor, encode_cursor, fingerprint
from services.query.encoding import normalise
from services.query.errors import ApiError
from services.query.models.posts import Post, PostHit
from shared.auth import InvalidKey, RateLimit, parse_key
from shared.classification.taxonomy import TaxonomyCatalog, TaxonomyError, label_key, split_label_key
from shared.sparse import SparseEncoder


def test_cursor_round_trip_and_refusals():
    query = fingerprint("gym", "hybrid", {})
    assert decode_cursor(encode_cursor(40, query), query, max_offset=499) == 40
    for cursor, other in [(encode_cursor(40, query), fingerprint("beach", "hybrid", {})),
                          ("%%%", query), (encode_cursor(600, query), query), (encode_cursor(0, query), query)]:
        with pytest.raises(ApiError) as caught:
            decode_cursor(cursor, other, max_offset=499)
        assert caught.value.status == 422 and caught.value.detail[0].field == "body.cursor"


def test_fingerprint_ignores_key_order():
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1}) != fingerprint({"a": 2, "b": 1})


@pytest.mark.parametrize(("text", "requests", "seconds"), [("60/min", 60, 60), ("10/s", 10, 1), (" 5 / hour ", 5, 3600),
                                                           ("1000/day", 1000, 86400)])
def test_rate_limit_parse(text, requests, seconds):
    rate = RateLimit.parse(text)
    assert (rate.requests, rate.per_seconds) == (requests, seconds)
    assert RateLimit.parse(str(rate)) == rate


@pytest.mark.parametrize("text", ["60", "60/week", "-1/min", "0/min", "x/min"])
def test_rate_limit_parse_refuses(text):
    with pytest.raises(ValueError):
        RateLimit.parse(text)


def test_parse_key():
    assert parse_key("ik_0123456789ab_" + "A-_z" * 11) == ("0123456789ab", "A-_z" * 11)
    for bad in ["", "ik_0123456789ab", "xx_0123456789ab_" + "a" * 43, "ik_0123456789AB_" + "a" * 43,
                "ik_0123456789ab_short"]:
        with pytest.raises(InvalidKey):
            parse_key(bad)


def test_sparse_encoder_weights_terms_like_bm25():
    encoder = SparseEncoder()
    doc = encoder.document("Running shoes for running, and the best running socks")
    query = encoder.query("the running shoes")
    weights = dict(zip(doc.indices, doc.values, strict=True))
    assert set(query.indices) <= set(weights)  # "the" is a stop word; "running"/"shoes" are in the doc
    assert query.values == [1.0] * len(query.indices)
    run = encoder.query("run").indices[0]  # stemmed: run, running, runs share one term
    assert run in weights and weights[run] == max(weights.values())  # three occurrences outweigh one
    assert weights[run] < 3 * min(weights.values())  # ... but saturate (BM25's k)
    assert encoder.query("the and of").is_empty()
    assert encoder.query("caf\ud800e").indices  # a lone surrogate does not break the Rust side


def test_normalise_collapses_whitespace():
    assert normalise("  easy\tvegan \n dinner ") == "easy vegan dinner"


def test_group_by_account_sums_the_best_three_posts():
    def hit(post_id: int, account: int, score: float) -> PostHit:
        post = Post(post_id=post_id, account_id=account, platform="x", title="t", published_at=0, handle=f"a{account}")
        return PostHit(id=str(post_id), post_id=post_id, score=score, post=post)

    hits = [hit(1, 1, 0.9), hit(2, 2, 0.5), hit(3, 2, 0.45), hit(4, 2, 0.4), hit(5, 2, 0.3), hit(6, 3, 0.2)]
    ranked = group_by_account(hits)
    assert [a.account.account_id for a in ranked] == [2, 1, 3]
    assert ranked[0].score == pytest.approx(1.35) and ranked[0].matching_posts == 4
    assert [p.post_id for p in ranked[0].top_posts] == [2, 3, 4]


def test_metrics_urls_setting():
    local = QuerySettings(query_port=8000, status_metrics_urls="local").metrics_urls(in_process=("indexer",))
    assert local == {"indexer": "in-process", "cdc": "http://127.0.0.1:8001/metrics",
                     "viability": "http://127.0.0.1:8002/metrics", "embedder": "http://127.0.0.1:8003/metrics",
                     "classifier": "http://127.0.0.1:8004/metrics"}
    explicit = QuerySettings(status_metrics_urls="embedder=http://e:9100/metrics, x").metrics_urls()
    assert explicit == {"embedder": "http://e:9100/metrics"}


def _write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / f"{name}.yaml").write_text(text)
    return directory


def test_default_taxonomy_has_the_demo_verticals():
    default = TaxonomyCatalog.load().get("default")
    assert [v.name for v in default.verticals] == [
        "beauty", "fashion", "travel", "food", "fitness", "gaming", "tech", "finance", "parenting", "music", "sports",
        "pets", "home_diy", "education", "comedy", "automotive"]
    assert all(v.enabled and v.description for v in default.verticals)


@pytest.mark.parametrize(("text", "problem"), [
    ("name: t\nverticals: [{name: a, description: x}, {name: a, description: y}]", "duplicate"),
    ("name: other\nverticals: [{name: a, description: x}]", "must match the file name"),
    ("name: t\nverticals: []", "verticals"),
    ("name: t\nverticals: [{name: A B, description: x}]", "name"),
    ("name: t\nverticals: [{name: a, description: x, colour: red}]", "colour"),
    ("{not yaml", "t.yaml"),
])
def test_invalid_taxonomy_files_are_refused(tmp_path, text, problem):
    with pytest.raises(TaxonomyError, match=problem):
        TaxonomyCatalog.load(_write(tmp_path / "tax", "t", text))


def test_no_taxonomy_files_is_an_error(tmp_path):
    with pytest.raises(TaxonomyError, match="no taxonomy files"):
        TaxonomyCatalog.load(tmp_path)


def test_label_keys_round_trip():
    assert split_label_key(label_key("client_b", "home_diy")) == ("client_b", "home_diy")
