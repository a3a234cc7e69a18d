"""Anti-framing headers on every HTML page, host names checked against DNS rebinding, gallery POSTs only from this
site, and no FastAPI docs/schema — on the real app (``python app.py``), plus the host policy on its own."""

from __future__ import annotations

import http.client
from pathlib import Path

import pytest
from PIL import Image

from studio.web.headers import HostPolicy, add_frame_headers, host_policy, with_frame_ancestors
from tests.server import AppServer

PROMPT = "a red circle in the top left on a white background"
NO_FRAMING = "frame-ancestors 'none'"


def call(
    server: AppServer, path: str, method: str = "GET", headers: dict[str, str] | None = None, body: str | None = None
) -> http.client.HTTPResponse:
    """One request exactly as written (``Host`` may be forged); the body is read into ``resp.body``."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    resp.body = resp.read()  # type: ignore[attr-defined]
    conn.close()
    return resp


def post_action(server: AppServer, record_id: str, action: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    return call(server, f"/gallery/{record_id}/{action}", "POST", {**form, **headers}, body="")


def csp(resp: http.client.HTTPResponse) -> str:
    """The response's one Content-Security-Policy (two would both be enforced: the merge must leave one)."""
    policies = resp.headers.get_all("Content-Security-Policy") or []
    assert len(policies) == 1, policies
    return policies[0]


def add_record(data_dir: Path, owner: str | None = None) -> tuple[dict, str]:
    """A finished record (no model needed) and its share token, written beside the running server."""
    from studio.store.store import Store, default_url

    request = {"prompt": PROMPT, "model": "m", "mode": "txt2img", "width": 16, "height": 16, "steps": 2, "seed": 1,
               "guidance": 3.5, "true_cfg": 1.0, "regions": [], "controls": [], "loras": []}  # fmt: skip
    with Store(default_url(data_dir), data_dir) as store:
        record = store.add(
            request=request, images=[Image.new("RGB", (16, 16), "red")], seeds=[1], timings={}, owner=owner
        )
        return record, store.share(record["id"], owner)


def favourite(data_dir: Path, record_id: str) -> bool:
    from studio.store.store import Store, default_url

    with Store(default_url(data_dir), data_dir) as store:
        return store.get(record_id)["favourite"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = AppServer(tmp_path_factory.mktemp("headers"))
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def shared(server) -> tuple[dict, str]:
    return add_record(server.data_dir)


def html_paths(record_id: str, token: str) -> list[tuple[str, int]]:
    return [("/", 200), ("/gallery", 200), (f"/gallery/{record_id}", 200), (f"/share/{token}", 200),
            ("/gallery/no-such-record", 404), ("/share/unknown-token-aaaaaaaaaaaa", 404)]  # fmt: skip


# ---- framing ------------------------------------------------------------------------------------------------
def test_every_html_page_refuses_to_be_framed(server, shared):
    record, token = shared
    for path, status in html_paths(record["id"], token):
        resp = call(server, path)
        assert (resp.status, resp.getheader("Content-Type").split(";")[0]) == (status, "text/html"), path
        assert NO_FRAMING in csp(resp) and resp.getheader("X-Frame-Options") == "DENY", path
    assert csp(call(server, "/")) == NO_FRAMING  # Gradio's page: nothing but frame-ancestors (its scripts run)
    assert csp(call(server, f"/share/{token}")).startswith("default-src 'none'; img-src 'self'")  # merged, kept


def test_on_spaces_only_hugging_face_may_frame_the_pages(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("headers-space")
    env = {"SPACE_ID": "someone/flux-studio", "SPACE_HOST": "someone-flux-studio.hf.space"}
    srv = AppServer(data_dir, env=env)
    try:
        record, token = add_record(data_dir)
        for path, status in html_paths(record["id"], token):
            resp = call(srv, path)
            assert resp.status in (status, 404), path  # multi-user on a Space: the record is not this visitor's
            policy = csp(resp)
            assert "frame-ancestors https://huggingface.co" in policy and "'none'" not in policy.split("frame-")[1]
            assert resp.getheader("X-Frame-Options") is None, path  # it cannot name huggingface.co
        png = call(srv, f"/share/{token}.png")
        assert png.status == 200 and "frame-ancestors https://huggingface.co" in csp(png)
        rebound = post_action(srv, record["id"], "favourite", {"Host": "evil.example", "Origin": "http://evil.example"})
        assert rebound.status == 403 and favourite(data_dir, record["id"]) is False
        assert call(srv, "/healthz", headers={"Host": "someone-flux-studio.hf.space"}).status == 200
    finally:
        srv.close()


# ---- host names and origins -----------------------------------------------------------------------------------
def test_a_dns_rebinding_host_reaches_nothing(server, shared):
    record, token = shared
    for path in ("/", "/gallery", f"/gallery/{record['id']}", f"/share/{token}", "/healthz", "/config"):
        resp = call(server, path, headers={"Host": "evil.example"})
        assert resp.status == 403 and b"--allowed-hosts" in resp.body, path  # type: ignore[attr-defined]
        assert resp.getheader("X-Frame-Options") == "DENY"
    rebound = {"Host": "evil.example", "Origin": "http://evil.example"}
    for headers in (rebound, {**rebound, "Sec-Fetch-Site": "same-origin"}):
        assert post_action(server, record["id"], "favourite", headers).status == 403
    assert favourite(server.data_dir, record["id"]) is False


def test_gallery_actions_only_from_this_site(server):
    record, _token = add_record(server.data_dir)
    here = f"127.0.0.1:{server.port}"
    refused = [{"Origin": "http://evil.example"}, {"Origin": f"http://localhost:{server.port + 1}"},
               {"Origin": "null"}, {}, {"Sec-Fetch-Site": "cross-site"}]  # fmt: skip
    for headers in refused:
        assert post_action(server, record["id"], "favourite", headers).status == 403, headers
    assert favourite(server.data_dir, record["id"]) is False
    resp = post_action(server, record["id"], "favourite", {"Origin": f"http://{here}"})
    assert resp.status == 303 and favourite(server.data_dir, record["id"]) is True
    local = {"Host": f"localhost:{server.port}", "Origin": f"http://localhost:{server.port}"}
    assert post_action(server, record["id"], "favourite", local).status == 303
    assert post_action(server, record["id"], "favourite", {"Sec-Fetch-Site": "same-origin"}).status == 303
    assert favourite(server.data_dir, record["id"]) is True


def test_fastapi_docs_and_schema_are_not_served(server):
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
        assert call(server, path).status == 404, path


# ---- the policy on its own ----------------------------------------------------------------------------------------
def test_host_policy_allows_loopback_ips_and_configured_names_only():
    policy = host_policy("0.0.0.0", "https://studio.example.com/", "lan-box, other.example:8443", env={})
    for host in ("127.0.0.1:7860", "LOCALHOST:7860", "[::1]:7860", "192.168.1.5:7860", "studio.example.com",
                 "lan-box:7860", "other.example"):  # fmt: skip
        assert policy.host_allowed(host), host
    for host in ("evil.example", "evil.example:7860", "studio.example.com.evil.example", "", None, "a@b", "[::1"):
        assert not policy.host_allowed(host), host
    assert host_policy("studio-box", env={"SPACE_HOST": "x-y.hf.space"}).names >= {"studio-box", "x-y.hf.space"}
    assert host_policy(allowed_hosts="*", env={}).host_allowed("anything.example")


def test_origin_must_be_the_allowed_host_or_a_configured_public_name():
    policy = host_policy("127.0.0.1", "https://studio.example.com", env={})
    assert policy.origin_allowed("http://127.0.0.1:7860", "127.0.0.1:7860")
    assert policy.origin_allowed("https://studio.example.com", "127.0.0.1:7860")  # a proxy rewrote the Host
    assert not policy.origin_allowed("http://localhost:8000", "127.0.0.1:7860")  # another local site
    assert not policy.origin_allowed("http://6.6.6.6", "192.168.1.5:7860")
    assert not policy.origin_allowed("http://evil.example", "evil.example")  # DNS rebinding: same origin, bad host
    assert not policy.origin_allowed("null", "127.0.0.1:7860") and not policy.origin_allowed(None, "127.0.0.1:7860")
    assert HostPolicy(any_host=True).origin_allowed("http://testserver", "testserver")  # bare apps (unit tests)


def test_frame_headers_merge_into_an_existing_policy():
    assert with_frame_ancestors("", "'none'") == "frame-ancestors 'none'"
    merged = with_frame_ancestors("default-src 'self'; Frame-Ancestors *;", "https://huggingface.co")
    assert merged == "default-src 'self'; frame-ancestors https://huggingface.co"
    message = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/html"), (b"x-frame-options", b"SAMEORIGIN")],
    }
    add_frame_headers(message, "'none'", deny=True)
    assert sorted(message["headers"]) == [
        (b"content-security-policy", b"frame-ancestors 'none'"),
        (b"content-type", b"text/html"),
        (b"x-frame-options", b"DENY"),
    ]
    json_message = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    add_frame_headers(json_message, "'none'", deny=True)
    assert json_message["headers"] == [(b"content-type", b"application/json")]
