"""The same repo as a Hugging Face Space: serves with the Spaces environment; ?share= reaches share pages."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from studio.spaces_support import gpu
from tests.server import AppServer


def test_gpu_decorator_is_a_no_op_off_zero_gpu(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)

    def work() -> int:
        return 7

    assert gpu(work) is work


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("space-data")
    env = {"SPACE_ID": "someone/flux-studio", "SPACE_HOST": "someone-flux-studio.hf.space",
           "GRADIO_SERVER_NAME": "127.0.0.1", "SYSTEM": "spaces",
           # what a Space with `hf_oauth: true` gets (the provider is only contacted when someone logs in)
           "OAUTH_CLIENT_ID": "test-client", "OAUTH_CLIENT_SECRET": "test-secret", "OAUTH_SCOPES": "openid profile",
           "OPENID_PROVIDER_URL": "https://huggingface.co"}
    srv = AppServer(data_dir, env=env)
    yield srv
    srv.close()


def test_app_serves_with_the_spaces_environment(space):
    with urllib.request.urlopen(space.url + "/healthz") as resp:
        assert json.load(resp)["status"] == "ok"
    with urllib.request.urlopen(space.url + "/") as resp:
        assert resp.status == 200 and b"Flux Studio" in resp.read()
    with urllib.request.urlopen(space.url + "/config") as resp:
        config = json.load(resp)
    assert any(c.get("props", {}).get("value", "").startswith("Sign in") or c.get("type") == "loginbutton"
               for c in config["components"])  # multi-user on a Space with OAuth: a Hugging Face login button


def test_query_string_share_form_redirects_to_the_share_page(space):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(space.url + "/?share=unknown-token-aaaaaaaaaaaa")
    assert err.value.code == 404 and "/share/unknown-token" in err.value.url
