"""The admin command and the dev key, against the session's Redis; keys it makes work on the API."""

from __future__ import annotations

import re

import pytest

from services.query import admin_keys
from shared.auth import ApiKeyStore, Scope


@pytest.fixture
def cli(monkeypatch, infra, capsys):
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{infra.config.redis_port}/0")

    def run(*argv: str) -> tuple[int, str, str]:
        code = admin_keys.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_create_list_revoke(cli, client, corpus):
    code, out, _ = cli("create", "--tenant", "initech", "--scopes", "search,feedback", "--accounts", "1,2",
                       "--platforms", "TikTok", "--rate", "5/s", "--label", "initech staging")
    assert code == 0
    key = re.search(r"key:\s+(ik_\S+)", out).group(1)
    key_id = re.search(r"key id:\s+(\w+)", out).group(1)
    assert "accounts [1, 2], platforms ['tiktok']" in out and "5/s" in out
    page = client.post("/v1/search/posts", json={"query": "a", "limit": 100}, headers={"X-API-Key": key}).json()
    assert {h["post"]["account_id"] for h in page["results"]} == {a for a in (1, 2) if corpus.accounts[a].platform
                                                                  == "tiktok"}
    code, out, _ = cli("list")
    assert code == 0 and key_id in out and "initech" in out and key not in out
    assert cli("revoke", key_id)[0] == 0
    assert client.get("/v1/taxonomies", headers={"X-API-Key": key}).status_code == 401
    assert re.search(rf"{key_id}.*initech.*\d{{4}}-\d\d-\d\d \d\d:\d\d\s+\d{{4}}-", cli("list")[1])


@pytest.mark.parametrize(("argv", "message"), [
    (["--scopes", "search"], "--all-data"),
    (["--scopes", "search,superuser", "--all-data"], "scopes"),
    (["--scopes", "search", "--accounts", "1,x"], "accounts"),
    (["--scopes", "search", "--all-data", "--rate", "fast"], "rate"),
])
def test_create_refuses_unclear_requests(cli, argv, message):
    code, _, err = cli("create", "--tenant", "t", *argv)
    assert code == 2 and message in err


def test_revoking_an_unknown_key_fails(cli):
    code, _, err = cli("revoke", "000000000000")
    assert code == 1 and "no key" in err


def test_dev_key_is_reused_and_recreated_when_redis_forgot_it(context, tmp_path, redis_client):
    store: ApiKeyStore = context.keys
    key_file = tmp_path / "dev-api-key"
    first = admin_keys.ensure_dev_key(store, key_file)
    assert admin_keys.ensure_dev_key(store, key_file) == first
    record = store.authenticate(first)
    assert set(record.scopes) == set(Scope) and record.data_scope.is_unrestricted()
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    redis_client.delete(f"apikey:{record.key_id}")  # e.g. a fresh Redis
    second = admin_keys.ensure_dev_key(store, key_file)
    assert second != first and store.authenticate(second).tenant == "dev"
