"""PNG metadata (ours, A1111/Forge, ComfyUI) and the content-addressed input store, on real PNG files."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from studio.core.errors import InvalidRequest, NotFound
from studio.core.request import GenerationRequest
from studio.store.assets import AssetStore
from studio.store.pngmeta import a1111_parameters, read_png_request, save_png

FORGE = (
    "a cat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1, "
    "Distilled CFG Scale: 3.5, Seed: 42, Size: 896x1152, Model hash: abc, Model: flux1-dev"
)


def make_request(prompt: str = "a red circle", **extra: object) -> dict:
    fields: dict = {"model": "m", "width": 64, "height": 64, "steps": 4, "seed": 1, "guidance": 3.5, **extra}
    return GenerationRequest(prompt=prompt, **fields).to_dict()


def record_meta(request: dict) -> dict:
    return {"id": "20250101-000000-0123abcd", "created_at": "2025-01-01T00:00:00+00:00", "status": "done",
            "request": request, "images": [{"path": "/elsewhere.png"}], "timings": {}, "replay_of": None,
            "favourite": False, "tags": []}  # fmt: skip


def png_bytes(img: Image.Image | None = None, **text: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    buf = io.BytesIO()
    (img or Image.new("RGB", (64, 64), "red")).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def noise_png() -> bytes:
    return png_bytes(Image.frombytes("RGB", (64, 64), bytes(range(256)) * 48))


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims a huge size: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# ---- writing and reading our own metadata ------------------------------------------------------------------
def test_request_survives_save_then_read(tmp_path: Path) -> None:
    request = make_request(negative_prompt="blurry, dark", loras=(), batch_size=2)
    path = tmp_path / "out" / "x-1.png"
    digest = save_png(Image.new("RGB", (64, 64), "red"), path, record_meta(request), seed=2)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [p.name for p in path.parent.iterdir()] == ["x-1.png"]  # no temp files left
    expected = {**request, "seed": 2, "batch_size": 1}
    assert read_png_request(path) == expected
    assert read_png_request(path.read_bytes()) == expected
    meta = json.loads(Image.open(path).text["flux_studio"])
    assert meta["id"] == "20250101-000000-0123abcd" and meta["seed"] == 2 and "images" not in meta


def test_parameters_text_is_a1111_style() -> None:
    request = make_request("a cat", negative_prompt="blurry", true_cfg=2.5)
    assert a1111_parameters(request, 7) == (
        "a cat\nNegative prompt: blurry\nSteps: 4, Sampler: Euler (flow match), CFG scale: 2.5, "
        "Distilled CFG Scale: 3.5, Seed: 7, Size: 64x64, Model: m, Version: Flux Studio"
    )
    assert "Negative prompt" not in a1111_parameters(make_request("a cat"), 7)


def test_our_parameters_text_alone_reads_back() -> None:
    request = make_request("line one\nline two", negative_prompt="ugly", true_cfg=3.0, model="org/model, v2: final")
    back = read_png_request(png_bytes(parameters=a1111_parameters(request, 9)))
    assert back == {**request, "seed": 9, "batch_size": 1}


def test_unicode_prompts_survive(tmp_path: Path) -> None:
    request = make_request("été — 猫")
    save_png(Image.new("RGB", (64, 64)), tmp_path / "u.png", record_meta(request), seed=1)
    assert read_png_request(tmp_path / "u.png")["prompt"] == "été — 猫"


# ---- reading other tools' metadata ------------------------------------------------------------------------
def test_forge_parameters_are_parsed() -> None:
    got = read_png_request(png_bytes(parameters=FORGE))
    assert {k: got[k] for k in ("prompt", "negative_prompt", "steps", "seed", "width", "height", "model")} == {
        "prompt": "a cat",
        "negative_prompt": "blurry",
        "steps": 20,
        "seed": 42,
        "width": 896,
        "height": 1152,
        "model": "flux1-dev",
    }
    assert got["guidance"] == 3.5 and got["true_cfg"] == 1.0 and got["batch_size"] == 1
    assert GenerationRequest.from_dict(got).validate()


def test_a_single_cfg_scale_is_flux_guidance() -> None:
    got = read_png_request(
        png_bytes(parameters="a dog\nSteps: 28, Sampler: Euler, CFG scale: 3.5, Seed: 5, Size: 1024x1024")
    )
    assert got["guidance"] == 3.5 and got["true_cfg"] == 1.0 and got["negative_prompt"] is None


def test_comfyui_prompt_graph_is_parsed() -> None:
    graph = {
        "3": {"class_type": "KSampler",
              "inputs": {"seed": 77, "steps": 20, "cfg": 1.0, "positive": ["6", 0], "negative": ["7", 0]}},
        "5": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 832, "height": 1216, "batch_size": 1}},
        "6": {"class_type": "FluxGuidance", "inputs": {"guidance": 3.0, "conditioning": ["8", 0]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["9", 0]}},
        "8": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox", "clip": ["9", 0]}},
        "9": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors"}},
    }  # fmt: skip
    got = read_png_request(png_bytes(prompt=json.dumps(graph)))
    assert (got["prompt"], got["negative_prompt"], got["seed"], got["steps"]) == ("a fox", None, 77, 20)
    assert (got["width"], got["height"], got["guidance"], got["true_cfg"]) == (832, 1216, 3.0, 1.0)
    assert got["model"] == "flux1-dev.safetensors"


def test_png_without_metadata_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="has no generation metadata"):
        read_png_request(png_bytes())


def test_non_png_corrupt_or_truncated_input_is_refused(tmp_path: Path) -> None:
    jpeg = io.BytesIO()
    Image.new("RGB", (16, 16)).save(jpeg, format="JPEG")
    for bad in (b"not an image", jpeg.getvalue(), noise_png()[:300], png_header_only(100_000, 100_000)):
        with pytest.raises(InvalidRequest):
            read_png_request(bad)
    with pytest.raises(InvalidRequest):
        read_png_request(tmp_path / "missing.png")


# ---- content-addressed input images -----------------------------------------------------------------------
def test_put_image_stores_a_canonical_png_by_content_hash(tmp_path: Path) -> None:
    assets = AssetStore(tmp_path / "assets")
    assert not (tmp_path / "assets").exists()
    img = Image.new("RGB", (32, 32), "green")
    img.info["parameters"] = "secret prompt"
    ref = assets.put_image(img)
    path = assets.path(ref)
    assert ref == f"sha256:{path.stem}" and path.name == f"{hashlib.sha256(path.read_bytes()).hexdigest()}.png"
    assert Image.open(path).text == {}  # no metadata
    assert assets.put_image(Image.new("RGB", (32, 32), "green")) == ref and assets.exists(ref)
    assert assets.load(ref).tobytes() == img.tobytes()
    assert sorted(p.name for p in (tmp_path / "assets").iterdir()) == [path.name]


def test_modes_are_kept_or_converted(tmp_path: Path) -> None:
    assets = AssetStore(tmp_path)

    def stored_mode(img: Image.Image) -> str:
        return assets.load(assets.put_image(img)).mode

    assert stored_mode(Image.new("L", (8, 8), 200)) == "L"
    assert stored_mode(Image.new("RGBA", (8, 8))) == "RGBA"
    assert stored_mode(Image.new("P", (8, 8))) == "RGB"
    assert stored_mode(Image.new("1", (8, 8))) == "RGB"
    assert stored_mode(Image.new("LA", (8, 8))) == "RGBA"


def test_put_file_accepts_paths_and_bytes(tmp_path: Path) -> None:
    assets = AssetStore(tmp_path / "assets")
    upload = tmp_path / "upload.png"
    upload.write_bytes(noise_png())
    jpeg = io.BytesIO()
    Image.new("RGB", (16, 16), "blue").save(jpeg, format="JPEG")
    assert assets.put_file(upload) == assets.put_file(upload.read_bytes())
    assert assets.load(assets.put_file(jpeg.getvalue())).size == (16, 16)
    with pytest.raises(NotFound):
        assets.put_file(tmp_path / "missing.png")


def test_put_file_refuses_non_images_corrupt_truncated_and_bombs(tmp_path: Path) -> None:
    assets = AssetStore(tmp_path / "assets")
    good = noise_png()
    idat = good.index(b"IDAT") + 40
    corrupt = good[:idat] + bytes([good[idat] ^ 0xFF]) + good[idat + 1 :]
    cases = {
        b"%PDF-1.4 not an image": "not a supported image",
        corrupt: "corrupt or truncated",
        good[: len(good) // 2]: "corrupt or truncated",
        png_header_only(100_000, 100_000): "megapixels",  # past Pillow's own bomb limit
        png_header_only(8000, 7500): "megapixels",  # 60 MP: under Pillow's limit, over ours
    }
    for data, message in cases.items():
        with pytest.raises(InvalidRequest, match=message):
            assets.put_file(data)
    assert not (tmp_path / "assets").exists()


def test_malformed_refs_are_refused_and_missing_ones_not_found(tmp_path: Path) -> None:
    assets = AssetStore(tmp_path / "assets")
    bad_refs = [
        "sha256:../../etc",
        "sha256:" + "A" * 64,
        "md5:" + "0" * 64,
        "sha256:" + "0" * 63,
        "sha256:" + "0" * 64 + "\n",
        None,
    ]
    for bad in bad_refs:
        for method in (assets.load, assets.path, assets.exists):
            with pytest.raises(InvalidRequest):
                method(bad)  # type: ignore[arg-type]
    with pytest.raises(NotFound, match="upload the image again"):
        assets.load("sha256:" + "0" * 64)
    assert not assets.exists("sha256:" + "0" * 64)
