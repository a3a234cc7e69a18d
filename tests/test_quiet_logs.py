"""A user's mistake in the UI is one line in the server log, never a traceback; a stranger's record id likewise."""

from __future__ import annotations

import json
import secrets

import httpx
import pytest

from tests.server import AppServer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = AppServer(tmp_path_factory.mktemp("logs"))
    yield srv
    srv.close()


def _run(url: str, api_name: str, values: dict[str, object]) -> dict:
    """Call the UI event ``api_name`` through the queue with each input at its default unless given by elem_id."""
    with httpx.Client(timeout=120) as client:
        config = client.get(f"{url}/config").json()
        components = {c["id"]: c for c in config["components"]}
        fn_index, dep = next((k, d) for k, d in enumerate(config["dependencies"]) if d.get("api_name") == api_name)
        data = []
        for cid in dep["inputs"]:
            props = components[cid].get("props", {})
            data.append(values.get(props.get("elem_id"), props.get("value")))
        session = secrets.token_hex(8)
        body = {"fn_index": fn_index, "data": data, "session_hash": session}
        assert client.post(f"{url}/gradio_api/queue/join", json=body).status_code == 200
        with client.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:") and json.loads(line[5:]).get("msg") == "process_completed":
                    return json.loads(line[5:])
    raise AssertionError("no answer")


def test_an_empty_prompt_is_one_log_line_and_a_message(server):
    before = server.log_path.read_text()
    answer = _run(server.url, "on_generate", {"prompt": ""})
    assert answer["success"] is False and "prompt" in answer["output"]["error"].lower()
    added = server.log_path.read_text()[len(before) :]
    assert "Traceback" not in added
    assert [line for line in added.splitlines() if "refused" in line], added
    assert len(added.strip().splitlines()) <= 2, added
