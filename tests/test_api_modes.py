"""docs/api.md, run: every ``# example:`` block against a real multi-user server, and what each one must have made.

The examples run as written except for the server's address and ``steps=4`` → ``steps=2`` (flux-mini, 128×128).
Also: every ``generate`` parameter is described in ``view_api()`` and in the doc's table, and a file the client did
not upload — a server path sent as ``FileData`` by a raw HTTP call — is refused, top level or nested in a control.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.conftest import ROOT
from tests.server import AppServer

pytestmark = pytest.mark.slow
DOC = ROOT / "docs" / "api.md"
EXAMPLE = re.compile(r"```python\n(# example: (\w+)\n.*?)```", re.DOTALL)
DOC_URL = "http://127.0.0.1:7860"


def examples() -> dict[str, str]:
    found = {name: code for code, name in EXAMPLE.findall(DOC.read_text())}
    assert found, "docs/api.md has runnable examples"
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("api-modes")
    srv = AppServer(data, "--multi-user")
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """The doc's stand-in files: a photo, an edge-like picture and two half masks (white = the area meant)."""
    folder = tmp_path_factory.mktemp("api-inputs")
    photo = Image.new("RGB", (128, 128), (30, 60, 200))
    photo.paste((230, 40, 40), (20, 20, 70, 70))
    photo.save(folder / "photo.png")
    edges = Image.new("RGB", (160, 96), "white")  # another size than the output: resized by the server
    edges.paste((0, 0, 0), (40, 20, 110, 80))
    edges.save(folder / "edges.png")
    for name, box in (("left.png", (0, 0, 64, 128)), ("right.png", (64, 0, 128, 128))):
        mask = Image.new("L", (128, 128), 0)
        mask.paste(255, box)
        mask.save(folder / name)
    return folder


def run_example(name: str, server: AppServer, inputs: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    code = examples()[name].replace(DOC_URL, server.url).replace("steps=4", "steps=2")
    monkeypatch.chdir(inputs)
    scope: dict[str, Any] = {}
    exec(compile(code, f"docs/api.md:{name}", "exec"), scope)  # noqa: S102 - the doc's own example
    return scope["result"]


def png(path: str) -> Image.Image:
    with Image.open(path) as img:
        assert img.format == "PNG"
        return img.convert("RGB")


def stored(server: AppServer, ref: str) -> bool:
    return (server.data_dir / "assets" / f"{ref.removeprefix('sha256:')}.png").is_file()


def check_done(result: dict[str, Any], mode: str) -> dict[str, Any]:
    assert result["status"] == "done" and result["request"]["mode"] == mode
    for path in result["images"]:
        assert png(path).size == (128, 128)
    return result["request"]


def test_txt2img(server, inputs, monkeypatch):
    request = check_done(run_example("txt2img", server, inputs, monkeypatch), "txt2img")
    assert request["seed"] == 3 and request["steps"] == 2


def test_img2img(server, inputs, monkeypatch):
    request = check_done(run_example("img2img", server, inputs, monkeypatch), "img2img")
    assert request["strength"] == 0.7 and stored(server, request["init_image"]) and request["mask"] is None


def test_inpaint(server, inputs, monkeypatch):
    request = check_done(run_example("inpaint", server, inputs, monkeypatch), "inpaint")
    assert stored(server, request["init_image"]) and stored(server, request["mask"])
    with Image.open(server.data_dir / "assets" / f"{request['mask'].removeprefix('sha256:')}.png") as mask:
        assert mask.convert("L").getpixel((10, 10)) == 255 and mask.convert("L").getpixel((120, 10)) == 0


def test_control(server, inputs, monkeypatch):
    request = check_done(run_example("control", server, inputs, monkeypatch), "txt2img")
    (control,) = request["controls"]
    assert (control["kind"], control["preprocess"], control["strength"], control["start"], control["end"]) == (
        "canny",
        True,
        0.8,
        0.0,
        0.8,
    )
    assert stored(server, control["image"])


def test_regions(server, inputs, monkeypatch):
    request = check_done(run_example("regions", server, inputs, monkeypatch), "txt2img")
    assert [r["prompt"] for r in request["regions"]] == ["a red circle", "a blue square"]
    assert all(stored(server, r["mask"]) for r in request["regions"]) and request["region_base_ratio"] == 0.2


def test_lora_true_cfg_and_negative_prompt(server, inputs, monkeypatch):
    request = check_done(run_example("lora", server, inputs, monkeypatch), "txt2img")
    (lora,) = request["loras"]
    assert lora["name"] == "zwx-orange" and len(lora["sha256"]) == 64 and lora["weight"] == 0.8
    assert request["true_cfg"] == 2.0 and request["negative_prompt"] == "blurry"


def test_schedule_and_cache(server, inputs, monkeypatch):
    request = check_done(run_example("schedule", server, inputs, monkeypatch), "txt2img")
    assert request["schedule"]["true_cfg"] == [[0, 3], [0.5, 1]]
    assert request["cache"] == {"kind": "fbcache", "threshold": 0.1}


def test_batch_replay_history_and_share(server, inputs, monkeypatch):
    result = run_example("records", server, inputs, monkeypatch)
    made, again, page, link = result["made"], result["again"], result["page"], result["link"]
    check_done(made, "txt2img")
    assert made["request"]["batch_size"] == 2 and len(made["images"]) == 2
    assert again["replay_of"] == made["id"]
    assert [png(p).tobytes() for p in again["images"]] == [png(p).tobytes() for p in made["images"]]
    listed = {r["id"]: r for r in page["records"]}
    assert made["id"] in listed and page["total"] >= 2
    assert [img["url"] for img in listed[made["id"]]["images"]] == [
        f"/gallery/image/{made['id']}/0",
        f"/gallery/image/{made['id']}/1",
    ]
    assert link["url"] == f"/share/{link['token']}"
    with httpx.Client() as web:
        assert web.get(server.url + link["url"] + ".png").status_code == 200


def test_reference_is_refused_with_the_reason(server, inputs, monkeypatch):
    refusal = run_example("reference", server, inputs, monkeypatch)
    assert "cannot use reference images" in refusal and "remove reference" in refusal


def test_every_example_and_every_mode_is_run_here():
    tested = {"txt2img", "img2img", "inpaint", "control", "regions", "lora", "schedule", "records", "reference"}
    assert set(examples()) == tested


def test_every_parameter_is_described_in_view_api_and_the_doc(server):
    from gradio_client import Client

    api = Client(server.url, verbose=False).view_api(print_info=False, return_format="dict")
    params = api["named_endpoints"]["/generate"]["parameters"]
    names = [p["parameter_name"] for p in params]
    assert {
        "init_image",
        "mask",
        "strength",
        "control",
        "region",
        "reference",
        "lora",
        "schedule",
        "cache",
        "true_cfg",
        "negative_prompt",
    } <= set(names)
    assert all(p["python_type"]["description"] for p in params), [p["parameter_name"] for p in params]
    assert all("filepath" in p["python_type"]["type"] for p in params if p["parameter_name"] in ("init_image", "mask"))
    table = DOC.read_text().split("### Returns")[0]
    documented = {n for cell in re.findall(r"^\| `([^|]+)` \|", table, re.MULTILINE) for n in re.findall(r"\w+", cell)}
    assert set(names) == documented
    for endpoint in ("/replay", "/history", "/share"):
        assert all(p["python_type"]["description"] for p in api["named_endpoints"][endpoint]["parameters"])


def _raw_generate(server: AppServer, token: str, **named: Any) -> str:
    """``/generate`` by plain HTTP (no gradio_client, so nothing is uploaded); the event stream's text."""
    from gradio_client import Client

    headers = {"Authorization": f"Bearer {token}"}
    api = Client(server.url, verbose=False, headers=headers).view_api(print_info=False, return_format="dict")
    params = api["named_endpoints"]["/generate"]["parameters"]
    data = [named.get(p["parameter_name"], p["parameter_default"]) for p in params]
    with httpx.Client(headers=headers, timeout=120) as web:
        event = web.post(f"{server.url}/gradio_api/call/generate", json={"data": data}).json()["event_id"]
        return web.get(f"{server.url}/gradio_api/call/generate/{event}").text


def test_a_file_the_client_did_not_upload_is_refused(server, tmp_path):
    outside = tmp_path / "server-side.png"  # a readable PNG on the server's disk, outside Gradio's upload folder
    Image.frombytes("RGB", (64, 64), secrets.token_bytes(64 * 64 * 3)).save(outside)
    file_data = {"path": str(outside), "meta": {"_type": "gradio.FileData"}}
    token = secrets.token_urlsafe(32)
    before = sorted((server.data_dir / "assets").glob("*.png"))
    top = _raw_generate(server, token, prompt="x", steps=1, init_image=file_data)
    nested = _raw_generate(server, token, prompt="x", steps=1, control=[{"kind": "canny", "image": file_data}])
    plain = _raw_generate(server, token, prompt="x", steps=1, mask=str(outside))
    for answer in (top, nested, plain):
        assert answer.startswith("event: error")
    assert "not uploaded" in top and "not uploaded" in nested  # Gradio's own payload check comes first
    assert "mask must be a file" in plain
    assert sorted((server.data_dir / "assets").glob("*.png")) == before  # nothing of it was stored


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width``×``height`` and holds no pixels (a bomb's header)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IEND", b"")
    )


def test_api_inputs_are_only_files_in_gradios_upload_folder(tmp_path):
    """The studio's own check behind Gradio's: a FileData path must lie in the upload folder (no server running)."""
    from gradio.utils import get_upload_folder

    from studio.core.errors import InvalidRequest
    from studio.ui.api_files import store_upload, upload_path

    outside = tmp_path / "server-side.png"
    Image.new("RGB", (16, 16), "red").save(outside)
    for value in ({"path": str(outside)}, str(outside), {"path": ""}, None, {"path": "/etc/passwd"}):
        with pytest.raises(InvalidRequest, match="not uploaded here|must be a file"):
            upload_path(value, "init_image")
    upload = Path(get_upload_folder()) / secrets.token_hex(8)
    upload.mkdir(parents=True)
    try:
        (upload / "ok.png").write_bytes(outside.read_bytes())
        (upload / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 16)
        (upload / "huge.png").write_bytes(png_header(10_000, 10_000))
        from studio.store.assets import AssetStore

        assets = AssetStore(tmp_path / "assets")
        ref = store_upload(assets, {"path": str(upload / "ok.png")}, "init_image")
        assert assets.exists(ref)
        with pytest.raises(InvalidRequest, match="corrupt|not a supported image"):
            store_upload(assets, {"path": str(upload / "broken.png")}, "mask")
        with pytest.raises(InvalidRequest, match="megapixels"):  # studio.core.limits' cap, from the header alone
            store_upload(assets, {"path": str(upload / "huge.png")}, "control 1 image")
    finally:
        for f in upload.iterdir():
            f.unlink()
        upload.rmdir()
