"""Every Gradio event of a ``--multi-user`` server, called by an anonymous stranger with hostile payloads.

The studio's events are "private" in the API listing, but Gradio still runs any ``fn_index`` sent to
``/gradio_api/queue/join`` (or ``/gradio_api/run/predict``). So this test reads the app's own config, takes
**every** dependency (public and private, today's and any added later), and calls each one through the raw queue
with FileData / image-editor / gallery / record-JSON / string payloads pointing at: a planted secret file, the
history DB, ``/etc/passwd``, ``/proc/self/environ``, a relative ``../`` path, and another visitor's image and
record. Then it fetches every file URL and path the answers mention, and fails if any answer or file carries
the secret, the DB, passwd, the server's environment, or the other visitor's image or prompt.
"""

from __future__ import annotations

import io
import json
import os
import secrets
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT
from tests.server import AppServer

pytestmark = pytest.mark.slow

MARKER = "planted-secret-" + secrets.token_hex(8)
ENV_CANARY = "env-canary-" + secrets.token_hex(8)
VICTIM_PROMPT = "a red circle victimcanary" + secrets.token_hex(4)
FILE_TYPES = {"image", "imageeditor", "file", "gallery", "uploadbutton", "model3d", "video", "audio"}
EVENT_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    """A multi-user server with a planted secret next to its data folder and one record of another visitor."""
    root = tmp_path_factory.mktemp("fuzz")
    data = root / "data"
    data.mkdir()
    secret = root / "planted-secret.txt"
    secret.write_text(MARKER)
    server = AppServer(data, "--multi-user", env={"STUDIO_FUZZ_CANARY": ENV_CANARY})
    try:
        victim = _victim_record(server.url, data, root / "victim-downloads")
        yield server, secret, victim
    finally:
        server.close()


def _victim_record(url: str, data_dir: Path, downloads: Path) -> dict[str, Any]:
    """A record made by another visitor (its own cookie and key) through the studio's API.

    ``path`` is where the server stores its image (the name a stranger could guess from a leaked id), not the
    victim's own download, which lies on the victim's machine.
    """
    from gradio_client import Client

    cookie = "flux_studio_visitor=" + secrets.token_urlsafe(24)
    client = Client(
        url,
        verbose=False,
        download_files=str(downloads),
        headers={"Cookie": cookie, "Authorization": "Bearer " + secrets.token_urlsafe(24)},
    )
    out = client.predict(prompt=VICTIM_PROMPT, seed=7, steps=2, api_name="/generate")
    record_id = out["id"]
    pixels = np.asarray(Image.open(out["images"][0]).convert("RGB"))
    stored = data_dir / "images" / f"{record_id}-0.png"
    assert stored.is_file()
    return {"id": record_id, "path": stored, "pixels": pixels}


def _file_data(path: str) -> dict[str, Any]:
    return {
        "path": path,
        "url": None,
        "orig_name": Path(path).name,
        "size": None,
        "mime_type": None,
        "is_stream": False,
        "meta": {"_type": "gradio.FileData"},
    }


def _hostile(component: dict[str, Any], path: str, record_id: str, strings_hostile: bool) -> Any:
    """A hostile value of the component's own shape: files point at ``path``, strings at ``path`` or the id."""
    kind = component["type"]
    props = component.get("props", {})
    fd = _file_data(path)
    if kind == "imageeditor":
        return {"background": fd, "layers": [fd], "composite": fd, "id": None}
    if kind == "gallery":
        return [{"image": fd, "caption": None}]
    if kind == "file" or kind == "uploadbutton":
        return [fd] if props.get("file_count") in ("multiple", "directory") else fd
    if kind in FILE_TYPES:
        return fd
    if kind == "json":
        return {
            "id": record_id,
            "path": path,
            "images": [{"path": path, "sha256": "", "seed": 0}],
            "request": {"prompt": "x", "seed": 1, "controls": [{"kind": "canny", "image": path}]},
        }
    if not strings_hostile:
        return props.get("value")
    if kind in ("number", "slider"):
        return props.get("value")
    if kind == "checkbox":
        return True
    if kind == "checkboxgroup":
        return [path]
    if kind == "dropdown" and props.get("multiselect"):
        return [record_id, path]
    if kind == "dataframe":
        return props.get("value")
    return path if kind != "state" else record_id


def _payloads(config: dict[str, Any], dep: dict[str, Any], targets: list[str], record_id: str) -> list[list[Any]]:
    components = {c["id"]: c for c in config["components"]}
    inputs = [components[i] for i in dep["inputs"]]
    payloads = []
    for path in targets:
        payloads.append([_hostile(c, path, record_id, strings_hostile=True) for c in inputs])
        payloads.append([_hostile(c, path, record_id, strings_hostile=False) for c in inputs])
    payloads.append(
        [
            _hostile(c, targets[0], record_id, strings_hostile=True)
            if c["type"] in FILE_TYPES
            else (
                record_id if c["type"] in ("textbox", "dropdown", "state", "api") else c.get("props", {}).get("value")
            )
            for c in inputs
        ]
    )
    return payloads


def _call(client: httpx.Client, url: str, fn_index: int, data: list[Any], queued: bool) -> Any:
    """Run ``fn_index`` with ``data`` as a fresh anonymous session; the final message or answer as JSON."""
    session = secrets.token_hex(8)
    body = {"fn_index": fn_index, "data": data, "session_hash": session, "event_data": None, "trigger_id": None}
    if not queued:
        return client.post(f"{url}/gradio_api/run/predict", json=body, timeout=EVENT_TIMEOUT_S).json()
    joined = client.post(f"{url}/gradio_api/queue/join", json=body, timeout=30)
    if joined.status_code != 200:
        return {"join_status": joined.status_code, "body": joined.text}
    messages = []
    with client.stream(
        "GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}, timeout=EVENT_TIMEOUT_S
    ) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            messages.append(message)
            if message.get("msg") in ("process_completed", "close_stream", "unexpected_error"):
                break
    return messages


def _mentioned_files(answer: Any) -> set[str]:
    """Every ``url`` and ``path`` string anywhere in an answer."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("url", "path") and isinstance(value, str) and value:
                    found.add(value)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(answer)
    return found


def _leaks(body: bytes, victim: dict[str, Any]) -> list[str]:
    """What of the forbidden content ``body`` carries."""
    leaks = [
        name
        for name, needle in (
            ("planted secret", MARKER.encode()),
            ("environment", ENV_CANARY.encode()),
            ("history DB", b"SQLite format 3"),
            ("/etc/passwd", b"root:x:0:0:"),
            ("victim's prompt", VICTIM_PROMPT.encode()),
        )
        if needle in body
    ]
    try:
        with Image.open(io.BytesIO(body)) as img:
            pixels = np.asarray(img.convert("RGB"))
        if pixels.shape == victim["pixels"].shape and np.abs(pixels.astype(int) - victim["pixels"]).max() <= 2:
            leaks.append("victim's image")
    except Exception:  # noqa: BLE001 - not an image
        pass
    return leaks


def _fetch(client: httpx.Client, base: str, ref: str) -> bytes:
    if ref.startswith("http://") or ref.startswith("https://"):
        if not ref.startswith(base):
            return b""
        address = ref
    elif ref.startswith("/gradio_api/") or ref.startswith("/"):
        address = base + ref if ref.startswith("/gradio_api/") else f"{base}/gradio_api/file={ref}"
    else:
        address = f"{base}/gradio_api/file={ref}"
    response = client.get(address, timeout=30)
    return response.content if response.status_code == 200 else b""


def test_no_event_hands_a_stranger_a_file_or_record_it_does_not_own(target):
    server, secret, victim = target
    base = server.url
    data_dir = server.data_dir
    targets = [
        str(secret),
        str(data_dir / "studio.db"),
        "/etc/passwd",
        "/proc/self/environ",
        os.path.relpath(secret, ROOT),
        str(victim["path"]),
    ]
    with httpx.Client(follow_redirects=False) as client:
        config = client.get(f"{base}/config", timeout=30).json()
        dependencies = config["dependencies"]
        assert len(dependencies) > 40, "the app's config lists its events"
        leaks: list[str] = []
        called = 0
        for fn_index, dep in enumerate(dependencies):
            if dep.get("backend_fn") is False:
                continue
            for data in _payloads(config, dep, targets, victim["id"]):
                answer = _call(client, base, fn_index, data, queued=dep.get("queue") is not False)
                called += 1
                text = json.dumps(answer).encode()
                leaks += [f"event {fn_index} ({dep.get('api_name')}) answer: {what}" for what in _leaks(text, victim)]
                for ref in _mentioned_files(answer):  # every file an answer names, even payloads echoed back
                    body = _fetch(client, base, ref)
                    leaks += [
                        f"event {fn_index} ({dep.get('api_name')}) file {ref}: {what}" for what in _leaks(body, victim)
                    ]
        for path in targets:  # and Gradio's file route directly
            for prefix in ("/gradio_api/file=", "/file=", "/gradio_api/file/"):
                response = client.get(f"{base}{prefix}{path}", timeout=30)
                if response.status_code == 200:
                    leaks += [f"GET {prefix}{path}: {what}" for what in _leaks(response.content, victim)]
    assert called > 100
    assert not leaks, "\n".join(sorted(set(leaks)))
    assert server.proc.poll() is None, "the server survived the fuzzing"
