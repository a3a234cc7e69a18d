"""Security of the served app: nothing of the data folder through Gradio, --auth guards all but /share and /healthz."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from studio.store.store import Store, default_url
from tests.server import AppServer

PROMPT = "a red circle in the top left on a white background"


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    srv = AppServer(tmp_path_factory.mktemp("secure"), "--auth", "u:p")
    yield srv
    srv.close()


def test_auth_guards_the_studio_but_not_share_pages_or_healthz(guarded):
    from gradio_client import Client

    assert status(guarded.url + "/healthz") == 200
    assert status(guarded.url + "/gradio_api/info") == 401
    assert status(guarded.url + "/config") == 401
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do: no credentials, no generation
        Client(guarded.url, verbose=False).predict(prompt=PROMPT, api_name="/generate")
    made = Client(guarded.url, auth=("u", "p"), verbose=False).predict(prompt=PROMPT, seed=1, api_name="/generate")
    data_dir = guarded.log_path.parent
    with Store(default_url(data_dir), data_dir) as store:
        token = store.share(made["id"])
    assert status(f"{guarded.url}/share/{token}") == 200
    assert status(f"{guarded.url}/share/{token}.png") == 200


def test_one_login_opens_the_studio_the_gallery_and_its_images(guarded):
    """Logged in through the studio's own login form, the gallery and its images need no second (Basic) login."""
    import httpx
    from gradio_client import Client

    made = Client(guarded.url, auth=("u", "p"), verbose=False).predict(
        prompt=PROMPT, seed=3, steps=2, api_name="/generate"
    )
    with httpx.Client(base_url=guarded.url, timeout=60) as browser:
        assert browser.get("/gallery").status_code == 401
        assert browser.post("/login", data={"username": "u", "password": "wrong"}).status_code in (400, 401)
        assert browser.get(f"/gallery/image/{made['id']}/0").status_code == 401
        assert browser.post("/login", data={"username": "u", "password": "p"}).status_code == 200
        assert browser.get("/config").status_code == 200  # the studio itself
        assert browser.get("/gallery").status_code == 200
        image = browser.get(f"/gallery/image/{made['id']}/0")
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
        browser.cookies.set(next(iter(browser.cookies.keys())), "forged-token")
        assert browser.get("/gallery").status_code == 401


@pytest.mark.parametrize(
    "path",
    [
        "/gradio_api/file=/etc/passwd",
        "/gradio_api/file=../../../../etc/passwd",
        "/gradio_api/file=%2Fetc%2Fpasswd",
        "/file=/etc/passwd",
        "/gradio_api/file={data}/studio.db",
        "/gradio_api/file={data}/app.log",
        "/share/..%2F..%2Fstudio.db",
        "/gallery/image/..%2F..%2Fstudio.db/0",
        "/static/../../../etc/passwd",
    ],
)
def test_nothing_outside_the_images_is_served(tmp_path_factory, path):
    server = _open_server(tmp_path_factory)
    url = server.url + path.replace("{data}", str(server.log_path.parent))
    assert status(url) != 200


_SERVERS: dict[str, AppServer] = {}


def _open_server(tmp_path_factory) -> AppServer:
    if "open" not in _SERVERS:
        _SERVERS["open"] = AppServer(tmp_path_factory.mktemp("open"))
    return _SERVERS["open"]


def teardown_module() -> None:
    for server in _SERVERS.values():
        server.close()


def test_public_bind_without_auth_warns(tmp_path):
    server = AppServer(tmp_path, "--host", "0.0.0.0")
    try:
        log = server.log_path.read_text()
    finally:
        server.close()
    assert "without --auth" in log
