"""Stored images reach browsers only through owner-checked routes (or a live share token), never Gradio's files."""

from __future__ import annotations

import secrets

import httpx
import pytest

from studio.store.store import Store, default_url
from tests.server import AppServer

PROMPT = "a green triangle in the center on a white background"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = AppServer(tmp_path_factory.mktemp("images"), "--multi-user")
    yield srv
    srv.close()


def _visitor() -> httpx.Client:
    """A browser of its own: a fresh visitor cookie, kept between requests."""
    client = httpx.Client(timeout=60)
    client.cookies.set("flux_studio_visitor", secrets.token_urlsafe(24))
    return client


def _generate_as(server: AppServer, visitor: httpx.Client) -> dict:
    from gradio_client import Client

    cookie = f"flux_studio_visitor={visitor.cookies['flux_studio_visitor']}"
    return Client(server.url, verbose=False, headers={"Cookie": cookie}).predict(
        prompt=PROMPT, seed=2, steps=2, api_name="/generate"
    )


def test_a_visitors_image_is_served_to_them_alone_and_never_through_gradio(server):
    alice, bob, stranger = _visitor(), _visitor(), httpx.Client(timeout=60)
    made = _generate_as(server, alice)
    image = f"{server.url}/gallery/image/{made['id']}/0"
    mine = alice.get(image)
    assert mine.status_code == 200 and mine.content.startswith(b"\x89PNG")
    assert mine.headers["cache-control"] == "private"
    assert bob.get(image).status_code == 404
    assert stranger.get(image).status_code == 404
    stored = server.data_dir / "images" / f"{made['id']}-0.png"
    assert stored.is_file()
    for client in (alice, bob, stranger):  # the data folder is not part of Gradio's file serving, for anyone
        for prefix in ("/gradio_api/file=", "/file="):
            assert client.get(f"{server.url}{prefix}{stored}").status_code in (403, 404)


def test_a_revoked_share_leaves_no_url_that_still_serves_the_image(server):
    alice, stranger = _visitor(), httpx.Client(timeout=60)
    made = _generate_as(server, alice)
    with Store(default_url(server.data_dir), server.data_dir) as store:
        token = store.share(made["id"], None)
        assert stranger.get(f"{server.url}/share/{token}.png").status_code == 200
        store.unshare(token)
    stored = server.data_dir / "images" / f"{made['id']}-0.png"
    for url in (
        f"/share/{token}.png",
        f"/share/{token}",
        f"/gallery/image/{made['id']}/0",
        f"/gradio_api/file={stored}",
        f"/file={stored}",
    ):
        assert stranger.get(server.url + url).status_code in (403, 404), url


def test_the_api_hands_back_files_not_server_paths(server, tmp_path):
    from gradio_client import Client

    client = Client(server.url, verbose=False, download_files=str(tmp_path))
    made = client.predict(prompt=PROMPT, seed=5, steps=2, api_name="/generate")
    local = made["images"][0]
    assert local.startswith(str(tmp_path)) and open(local, "rb").read(4) == b"\x89PNG"  # downloaded by the client
    listed = client.predict(api_name="/history")["records"][0]
    assert listed["id"] == made["id"]
    assert "path" not in listed["images"][0] and listed["images"][0]["url"] == f"/gallery/image/{made['id']}/0"
    assert str(server.data_dir) not in str(listed)
