"""GET /v1/taxonomies and POST /v1/feedback (durable in a Redis stream)."""

from __future__ import annotations

import pytest
import yaml

from shared.classification.feedback import FEEDBACK_STREAM, read_feedback
from shared.config import PROJECT_ROOT


@pytest.fixture
def internal(keys):
    return keys.headers(keys.internal)


def test_taxonomies_list_every_vertical_enabled_or_not(client, internal):
    body = client.get("/v1/taxonomies", headers=internal).json()
    by_name = {t["name"]: t for t in body["taxonomies"]}
    assert set(by_name) == {"default", "brand_safety"}
    default = yaml.safe_load((PROJECT_ROOT / "config" / "taxonomies" / "default.yaml").read_text())
    assert [v["name"] for v in by_name["default"]["verticals"]] == [v["name"] for v in default["verticals"]]
    assert len(by_name["default"]["verticals"]) == 16
    assert all(v["description"] and v["enabled"] for v in by_name["default"]["verticals"])
    assert {v["name"]: v["enabled"] for v in by_name["brand_safety"]["verticals"]} == {"safe": True, "offensive": False}


def test_one_taxonomy_and_an_unknown_one(client, internal):
    assert client.get("/v1/taxonomies/brand_safety", headers=internal).json()["name"] == "brand_safety"
    response = client.get("/v1/taxonomies/nope", headers=internal)
    assert response.status_code == 404 and response.json()["error"] == "taxonomy 'nope' not found"


def test_feedback_is_recorded_durably_with_who_and_what(client, keys, redis_client, corpus):
    post = next(p for p in corpus.posts.values() if p.account_id in keys.acme_accounts)
    before = redis_client.xlen(FEEDBACK_STREAM)
    response = client.post("/v1/feedback", json={"post_id": post.id, "vertical": post.vertical,
                                                 "correct_vertical": "comedy", "comment": "it is a sketch"},
                           headers=keys.headers(keys.acme))
    assert response.status_code == 202
    receipt = response.json()
    assert receipt["status"] == "recorded"
    assert redis_client.xlen(FEEDBACK_STREAM) == before + 1
    entry_id, feedback = read_feedback(redis_client, count=1)[0]
    assert entry_id == receipt["feedback_id"]
    assert (feedback.tenant, feedback.post_id, feedback.account_id) == ("acme", post.id, post.account_id)
    assert (feedback.taxonomy, feedback.vertical, feedback.correct_vertical) == ("default", post.vertical, "comedy")
    assert feedback.api_key_id == keys.acme.split("_")[1] and feedback.comment == "it is a sketch"


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"post_id": 987654321, "vertical": "food"}, 404, None),
    ({"post_id": 1, "vertical": "astrology"}, 422, "body.vertical"),
    ({"post_id": 1, "vertical": "food", "correct_vertical": "astrology"}, 422, "body.correct_vertical"),
    ({"post_id": 1, "vertical": "food", "correct_vertical": "food"}, 422, "body.correct_vertical"),
    ({"post_id": 1, "taxonomy": "nope", "vertical": "food"}, 422, "body.taxonomy"),
    ({"post_id": 1}, 422, "body.vertical"),
    ({"post_id": 1, "vertical": "food", "comment": "x" * 1001}, 422, "body.comment"),
])
def test_bad_feedback_is_refused_clearly(client, internal, redis_client, body, status, field):
    before = redis_client.xlen(FEEDBACK_STREAM)
    response = client.post("/v1/feedback", json=body, headers=internal)
    assert response.status_code == status, response.text
    if field:
        assert field in [d["field"] for d in response.json()["detail"]]
    assert redis_client.xlen(FEEDBACK_STREAM) == before
