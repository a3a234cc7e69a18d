"""--multi-user owners: visitor cookies and API keys are stored only as hashes; API clients are owners of their own."""

from __future__ import annotations

import json
import secrets
import sqlite3
import types
import urllib.error
import urllib.request
from contextlib import closing
from pathlib import Path

import pytest

from studio.store import migrations
from studio.store.store import Store, default_url
from studio.web import visitors
from tests.server import AppServer
from tests.test_gallery import starlette_request

TINY = {"width": 64, "height": 64, "steps": 1}  # the least work the embedded model does per record


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = AppServer(tmp_path_factory.mktemp("owners"), "--multi-user")
    yield srv
    srv.close()


def client(server: AppServer, bearer: str | None = None, cookie: str | None = None):  # noqa: ANN201
    """A gradio_client.Client with a bearer token and/or a preset visitor cookie."""
    from gradio_client import Client

    headers = {"Authorization": f"Bearer {bearer}"} if bearer else None
    kwargs = {"cookies": {visitors.COOKIE: cookie}} if cookie else None
    return Client(server.url, verbose=False, headers=headers, httpx_kwargs=kwargs, download_files=False)


def history_ids(api) -> list[str]:  # noqa: ANN001
    return [r["id"] for r in api.predict(limit=500, api_name="/history")["records"]]


def db_bytes(data_dir: Path) -> bytes:
    """The raw bytes of the SQLite database and its journals."""
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob("studio.db*")) if p.is_file())


def owners(data_dir: Path) -> list[str | None]:
    with closing(sqlite3.connect(data_dir / "studio.db")) as conn:
        return [row[0] for row in conn.execute("SELECT owner FROM generation")]


def get(server: AppServer, path: str, cookie: str) -> str:
    req = urllib.request.Request(server.url + path, headers={"Cookie": f"{visitors.COOKIE}={cookie}"})
    with urllib.request.urlopen(req) as resp:
        return resp.read().decode()


def test_owner_keys_are_one_way_and_api_keys_are_apart_from_browsers() -> None:
    token = visitors.new_token()
    key = visitors.owner(starlette_request({visitors.COOKIE: token}), {})
    assert key == visitors.owner_key(token) and key.startswith("v:") and token not in key and len(key) <= 64
    bearer = types.SimpleNamespace(headers={"authorization": f"Bearer {token}"}, cookies={})
    assert visitors.api_owner(bearer, {}) == visitors.owner_key(token, visitors.KEY_PREFIX) != key
    basic = types.SimpleNamespace(headers={"authorization": "Basic dTpw"}, cookies={visitors.COOKIE: token})
    assert visitors.api_owner(basic, {}) == key  # another scheme (a proxy's login): the cookie decides
    with pytest.raises(ValueError, match="32–64 characters"):
        visitors.api_owner(types.SimpleNamespace(headers={"authorization": "Bearer short"}, cookies={}), {})
    assert visitors.api_owner(types.SimpleNamespace(headers={}, cookies={}), {}) is None


def test_a_version_3_database_gets_hashed_visitor_owners(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:3])
    Store(default_url(tmp_path), tmp_path).close()
    token = visitors.new_token()
    with closing(sqlite3.connect(tmp_path / "studio.db")) as conn, conn:  # rows as version 3 wrote them: raw cookies
        for gen_id, owner in (("old-v", token), ("old-hf", "hf:alice"), ("old-api", "api")):
            conn.execute(
                "INSERT INTO generation (id, created_at, status, request, prompt, search_text, model, images, timings,"
                " favourite, tags, owner) VALUES (?, '2026-01-01 00:00:00', 'done', ?, 'p', 'p', 'm', '[]', '{}', 0,"
                " '[]', ?)",
                (gen_id, json.dumps({"prompt": "p"}), owner),
            )
    monkeypatch.undo()
    with Store(default_url(tmp_path), tmp_path) as store:
        assert store.schema_version == len(migrations.MIGRATIONS)
        mine = visitors.owner(starlette_request({visitors.COOKIE: token}), {})
        assert [r["id"] for r in store.list(owner=mine)[0]] == ["old-v"]  # the visitor keeps their history
        assert store.list(owner=token)[1] == 0
        assert token.encode() not in (tmp_path / "studio.db").read_bytes()  # checkpointed while the Store is open
    assert sorted(owners(tmp_path)) == sorted([mine, "hf:alice", "api"])
    assert token.encode() not in db_bytes(tmp_path)  # the old value is zeroed, not left in a free page


def test_the_database_never_holds_a_visitor_cookie(server) -> None:
    browser = visitors.new_token()
    made = client(server, cookie=browser).predict(prompt="a red dot", seed=1, **TINY, api_name="/generate")
    page = get(server, "/gallery", browser)  # the browser of that cookie sees its record in the gallery
    assert made["id"] in page
    assert made["id"] not in get(server, "/gallery", visitors.new_token())  # another browser does not
    stored = owners(server.data_dir)
    assert visitors.owner_key(browser) in stored and browser not in stored
    assert all(owner and ":" in owner for owner in stored)  # every owner is a prefixed key, never a raw token
    assert browser.encode() not in db_bytes(server.data_dir)  # nor anywhere in the file, the WAL or the log
    assert browser not in (server.data_dir / "app.log").read_text()


def test_api_clients_are_owners_of_their_own(server) -> None:
    from gradio_client.exceptions import AppError

    browser = visitors.new_token()
    browsers = client(server, cookie=browser).predict(prompt="a browser's cat", seed=2, **TINY, api_name="/generate")
    alice_key, bob_key = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    alice, bob = client(server, bearer=alice_key), client(server, bearer=bob_key)
    made = alice.predict(prompt="alice's dog", seed=3, **TINY, api_name="/generate")
    assert history_ids(alice) == [made["id"]]  # alice sees hers only: not the browser's
    assert history_ids(client(server, bearer=alice_key)) == [made["id"]]  # the same key, a new Client: still hers
    assert history_ids(bob) == []  # bob sees nothing of alice's nor the browser's
    for action in ("/share", "/replay"):  # nor can he touch it by its id
        with pytest.raises(AppError, match="no generation with id"):
            bob.predict(made["id"], api_name=action)
    anonymous = client(server)  # no key: the visitor cookie gradio_client keeps from its first response
    assert visitors.COOKIE in anonymous.cookies
    assert browsers["id"] not in history_ids(anonymous) and history_ids(anonymous) == []
    assert history_ids(client(server, cookie=browser)) == [browsers["id"]]  # only the browser's own cookie
    stored = owners(server.data_dir)
    assert visitors.owner_key(alice_key, visitors.KEY_PREFIX) in stored and "api" not in stored
    assert alice_key.encode() not in db_bytes(server.data_dir)


def test_api_calls_without_an_identity_are_refused_clearly(server) -> None:
    body = json.dumps({"data": [None, 50, 0]}).encode()  # plain HTTP without a cookie jar: no identity
    req = urllib.request.Request(
        server.url + "/gradio_api/call/history", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req) as resp:
        event_id = json.loads(resp.read())["event_id"]
    with urllib.request.urlopen(f"{server.url}/gradio_api/call/history/{event_id}") as resp:
        stream = resp.read().decode()
    assert "event: error" in stream and "Authorization" in stream and "Bearer" in stream
    with pytest.raises(Exception, match="32–64 characters"):
        client(server, bearer="short").predict(api_name="/history")


def test_batch_zero_is_refused_through_the_api_as_on_the_cli(server) -> None:
    from studio.core.errors import InvalidRequest
    from studio.core.request import GenerationRequest

    with pytest.raises(InvalidRequest) as cli:
        GenerationRequest(prompt="x", model="", batch_size=0).validate()  # what studio.cli.requests builds
    api = client(server, bearer=secrets.token_urlsafe(32))
    with pytest.raises(Exception) as zero:
        api.predict(prompt="x", batch=0, **TINY, api_name="/generate")
    assert str(cli.value) in str(zero.value)  # "batch_size must be from 1 to 16 (got 0) — try 1", not a batch of 1
    with pytest.raises(Exception, match=r"batch_size must be from 1 to 16 \(got -1\)"):
        api.predict(prompt="x", batch=-1, **TINY, api_name="/generate")
    assert history_ids(api) == []
