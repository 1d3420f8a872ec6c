"""A tenant restricted to some accounts (acme) or one platform (globex) never sees anything else,
on any read path, whatever it asks for: the restriction is in the vector store filter."""

from __future__ import annotations

import pytest

PATHS_OF_A_POST = ("/v1/posts/{id}", "/v1/posts/{id}/similar")


@pytest.fixture
def acme(keys):
    return keys.headers(keys.acme)


@pytest.fixture
def globex(keys):
    return keys.headers(keys.globex)


def _search(client, headers, **body):
    response = client.post("/v1/search/posts", json={"query": "ideas tips routine", "limit": 100, **body},
                           headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("mode", ["hybrid", "semantic", "keyword"])
def test_search_returns_only_the_tenants_accounts(client, acme, keys, corpus, mode):
    page = _search(client, acme, mode=mode)
    assert page["results"]
    assert {h["post"]["account_id"] for h in page["results"]} <= keys.acme_accounts
    if mode == "semantic":  # semantic ranks every visible post: all of them, nothing else
        assert {h["post_id"] for h in page["results"]} == corpus.posts_of(keys.acme_accounts)


def test_facets_count_only_the_tenants_posts(client, acme, keys, corpus):
    facets = _search(client, acme)["facets"]
    assert sum(f["count"] for f in facets["platform"]) == len(corpus.posts_of(keys.acme_accounts))


def test_asking_for_other_accounts_cannot_widen_the_scope(client, acme, keys, corpus):
    others = sorted(set(corpus.accounts) - keys.acme_accounts)[:5]
    assert _search(client, acme, filters={"account_id": others})["results"] == []
    mixed = [others[0], min(keys.acme_accounts)]
    found = {h["post"]["account_id"] for h in _search(client, acme, filters={"account_id": mixed})["results"]}
    assert found == {min(keys.acme_accounts)}


def test_posts_and_accounts_of_other_tenants_are_not_found(client, acme, keys, corpus):
    other_post = next(p for p in corpus.posts.values() if p.account_id not in keys.acme_accounts)
    own_post = next(p for p in corpus.posts.values() if p.account_id in keys.acme_accounts)
    for template in PATHS_OF_A_POST:
        assert client.get(template.format(id=other_post.id), headers=acme).status_code == 404
        assert client.get(template.format(id=own_post.id), headers=acme).status_code == 200
    similar = client.get(f"/v1/posts/{own_post.id}/similar?limit=50", headers=acme).json()["results"]
    assert similar and {h["post"]["account_id"] for h in similar} <= keys.acme_accounts
    assert client.get(f"/v1/accounts/{other_post.account_id}", headers=acme).status_code == 404
    assert client.get(f"/v1/accounts/{own_post.account_id}", headers=acme).status_code == 200


def test_account_search_returns_only_the_tenants_accounts(client, acme, keys):
    body = client.post("/v1/search/accounts", json={"query": "ideas", "limit": 50}, headers=acme).json()
    assert body["results"]
    assert {r["account"]["account_id"] for r in body["results"]} <= keys.acme_accounts
    assert {p["post"]["account_id"] for r in body["results"] for p in r["top_posts"]} <= keys.acme_accounts


def test_feedback_on_another_tenants_post_is_not_found(client, acme, keys, corpus):
    other_post = next(p for p in corpus.posts.values() if p.account_id not in keys.acme_accounts)
    response = client.post("/v1/feedback", json={"post_id": other_post.id, "vertical": other_post.vertical},
                           headers=acme)
    assert response.status_code == 404


def test_platform_restricted_tenant_sees_one_platform(client, globex, corpus):
    page = _search(client, globex, filters={"platform": ["youtube", "tiktok"]})
    youtube = {p.id for p in corpus.posts.values() if p.platform == "youtube"}
    assert {h["post_id"] for h in page["results"]} <= youtube and page["results"]
    assert {f["value"] for f in page["facets"]["platform"]} == {"youtube"}
    tiktok_post = next(p for p in corpus.posts.values() if p.platform == "tiktok")
    assert client.get(f"/v1/posts/{tiktok_post.id}", headers=globex).status_code == 404


def test_an_unrestricted_key_sees_what_the_tenant_cannot(client, keys, corpus):
    other_post = next(p for p in corpus.posts.values() if p.account_id not in keys.acme_accounts)
    assert client.get(f"/v1/posts/{other_post.id}", headers=keys.headers(keys.internal)).status_code == 200
