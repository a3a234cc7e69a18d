"""Hostile files: header-bomb LoRAs, planted pickles, over-cap images at every entry point, huge prompt files.

Real files, the real Studio (``studio`` / ``engine`` fixtures), real subprocesses for the CLI and the app; no mocks.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import struct
import subprocess
import sys
import threading
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from studio.core import limits
from studio.core.errors import InvalidRequest, StudioError
from studio.core.request import GenerationRequest, LoraSpec
from studio.lora.checkpoints import checkpoint_path, load_checkpoint
from studio.lora.files import LoraFileError, LoraLibrary, read_header
from studio.lora.inspection import load_tensors
from studio.lora.training import train_lora
from studio.lora.training_inputs import TrainingConfig, TrainingExample
from studio.service import CONTROL_PREVIEW_BYTES, CONTROL_PREVIEWS_KEPT
from studio.store import pngmeta
from studio.ui import edit_panel, region_masks, training_panel
from tests.conftest import MODEL, ROOT
from tests.server import AppServer
from training import torch_state

DEEP = 100_000
OVER_CAP = (8000, 7500)  # 60 MP: over our 50 MP, under Pillow's hard limit (opens lazily, with a warning)
HUGE = (12000, 12000)  # 144 MP: over Pillow's hard limit too


# ---- helpers ---------------------------------------------------------------------------------------------------
def safetensors_bytes(header: bytes | str) -> bytes:
    """A .safetensors file: 8-byte little-endian header length, then the header as given."""
    raw = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(raw)) + raw


def png_header_only(width: int, height: int) -> bytes:
    """A few hundred bytes of PNG whose header claims ``width`` × ``height`` (no pixel data to speak of)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def lazy_image(tmp_path: Path, size: tuple[int, int] = OVER_CAP) -> Image.Image:
    """An over-cap PIL image opened lazily: its size is known, its pixels were never decoded."""
    path = tmp_path / f"big_{size[0]}x{size[1]}.png"
    path.write_bytes(png_header_only(*size))
    return Image.open(path)


def zero_layer(size: tuple[int, int] = OVER_CAP, channels: int = 4) -> np.ndarray:
    """An H×W×C uint8 array of that size taking no memory (a broadcast view), as an editor layer."""
    return np.broadcast_to(np.zeros(channels, np.uint8), (size[1], size[0], channels))


def bomb_folder(folder: Path) -> Path:
    """A LoRA folder with header bombs next to a good LoRA."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bomb.safetensors").write_bytes(safetensors_bytes("[" * DEEP + "]" * DEEP))
    nested = '{"__metadata__": {"a": ' + '{"b": ' * DEEP + "1" + "}" * DEEP + "}}"
    (folder / "meta_bomb.safetensors").write_bytes(safetensors_bytes(nested))
    save_file(
        {"transformer.x.lora_A.weight": torch.zeros(2, 4)},
        str(folder / "good.safetensors"),
        metadata={"ss_tag_frequency": "[" * DEEP + "]" * DEEP, "trigger_words": "zwx"},
    )
    return folder


# ---- LoRA header bombs -----------------------------------------------------------------------------------------
def test_header_bombs_are_listed_unusable_with_a_reason_and_never_raise(tmp_path: Path) -> None:
    library = LoraLibrary([bomb_folder(tmp_path / "loras")])
    entries = {entry["name"]: entry for entry in (library.describe(f) for f in library.scan())}
    assert set(entries) == {"bomb", "meta_bomb", "good"}
    for name in ("bomb", "meta_bomb"):
        assert f"{name}.safetensors has a corrupt safetensors header (JSON nested deeper than" in entries[name]["error"]
        assert "not a usable LoRA" in entries[name]["error"]
        with pytest.raises(LoraFileError, match="nested deeper"):
            read_header(tmp_path / "loras" / f"{name}.safetensors")
        with pytest.raises(LoraFileError, match="nested deeper"):
            load_tensors(tmp_path / "loras" / f"{name}.safetensors")
        with pytest.raises(SafetensorError), safe_open(str(tmp_path / "loras" / f"{name}.safetensors"), "pt"):
            pass  # the Rust reader refuses it with an error too, no crash
    good = entries["good"]
    assert good["error"] is None and good["trigger_words"] == ["zwx"] and good["rank"] == 2


def test_generating_with_a_header_bomb_lora_is_refused_with_the_reason(studio, data_dir: Path) -> None:
    bomb_folder(data_dir / "loras")
    request = GenerationRequest(prompt="a red circle", seed=1, steps=1, loras=(LoraSpec("bomb"),))
    with pytest.raises(LoraFileError, match="bomb.safetensors has a corrupt safetensors header \\(JSON nested"):
        studio.generate(request)


def test_lora_inspect_of_a_header_bomb_exits_2_with_a_message(tmp_path: Path) -> None:
    folder = bomb_folder(tmp_path / "loras")
    env = {
        **os.environ,
        "STUDIO_DATA_DIR": str(tmp_path / "data"),
        "STUDIO_MODEL": str(MODEL),
        "STUDIO_THREADS": "1",
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "studio", "lora", "inspect", "bomb.safetensors", "--json"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    error = json.loads(proc.stdout)["error"]
    assert "bomb.safetensors has a corrupt safetensors header (JSON nested deeper than 8 levels)" in error


@pytest.mark.slow
def test_the_app_starts_with_a_header_bomb_in_the_lora_folders(data_dir: Path, tmp_path: Path) -> None:
    folder = bomb_folder(tmp_path / "loras")
    server = AppServer(data_dir, env={"STUDIO_LORA_DIRS": str(folder)})
    try:
        with urllib.request.urlopen(server.url + "/healthz", timeout=10) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(server.url + "/", timeout=30) as resp:
            assert resp.status == 200
    finally:
        server.close()
    log = server.log_path.read_text()
    assert "RecursionError" not in log and "Traceback" not in log


# ---- planted pickles -------------------------------------------------------------------------------------------
class Planted:
    """Unpickling this (with ``weights_only=False``) creates ``marker`` — a stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


def plant(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"fingerprint": "x", "step": 1, "lora": {}, "payload": Planted(marker)}, path)


def test_a_planted_training_checkpoint_is_not_executed_and_training_starts_fresh(
    engine, tmp_path: Path, caplog
) -> None:
    folder, marker = tmp_path / "loras", tmp_path / "pwned"
    config = TrainingConfig("planted", "zwx", rank=2, steps=3, learning_rate=1e-2, batch_size=2)
    plant(checkpoint_path(folder, "planted"), marker)
    seen: list[int] = []
    with caplog.at_level(logging.WARNING, logger="studio.lora.checkpoints"):
        path = train_lora(engine, config, tiny_examples(), folder, on_progress=lambda s, t, loss: seen.append(s))
    assert not marker.exists()
    assert seen == [1, 2, 3] and path.is_file()  # started fresh
    warnings = [r.getMessage() for r in caplog.records if "ignoring the training checkpoint" in r.getMessage()]
    assert len(warnings) == 1 and "cannot be loaded safely" in warnings[0]
    plant(tmp_path / "again.pt", marker)
    torch.load(tmp_path / "again.pt", weights_only=False)  # proof the plant is live when loaded unsafely
    assert marker.exists()


def test_a_real_training_checkpoint_round_trips_with_weights_only(engine, tmp_path: Path) -> None:
    folder, cancel = tmp_path / "loras", threading.Event()
    config = TrainingConfig("halfway", "zwx", rank=2, steps=6, learning_rate=1e-2, batch_size=2)

    def stop_at_4(step: int, total: int, loss: float) -> None:
        if step == 4:
            cancel.set()

    with pytest.raises(StudioError, match="cancelled"):
        train_lora(engine, config, tiny_examples(), folder, on_progress=stop_at_4, cancel=cancel, checkpoint_every=2)
    ckpt = checkpoint_path(folder, "halfway")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["step"] == 4 and state["losses"].shape == (4,) and state["generator"].dtype == torch.uint8
    assert load_checkpoint(ckpt, state["fingerprint"], config.steps) is not None
    assert load_checkpoint(ckpt, "another run", config.steps) is None
    resumed: list[int] = []
    train_lora(engine, config, tiny_examples(), folder, on_progress=lambda s, t, loss: resumed.append(s))
    assert resumed == [5, 6]


def tiny_examples() -> list[TrainingExample]:
    colours = ["red", "green", "blue", "yellow"]
    return [TrainingExample(Image.new("RGB", (64, 64), c), f"a {c} square") for c in colours]


def test_training_script_checkpoints_load_weights_only_and_refuse_plants(tmp_path: Path) -> None:
    net = torch.nn.Linear(4, 2)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, betas=(0.9, 0.99))
    net(torch.ones(1, 4)).sum().backward()
    opt.step()
    args = argparse.Namespace(out=Path("out"), keep=None, lr=1e-3, steps=10, threads=1)
    saved = {
        "models": net.state_dict(),
        "ema": net.state_dict(),
        "opt": opt.state_dict(),
        "step": 3,
        "best": float(np.float64(0.5)),
        "opt_start": 0,
        "args": torch_state.plain_args(args),
    }
    torch.save(saved, tmp_path / "ckpt.pt")
    loaded = torch_state.load(tmp_path / "ckpt.pt")
    assert loaded["args"]["out"] == "out" and loaded["step"] == 3 and loaded["best"] == 0.5
    opt.load_state_dict(loaded["opt"])
    assert all(torch.equal(loaded["models"][k], v) for k, v in net.state_dict().items())
    torch.save({**saved, "args": vars(args)}, tmp_path / "old.pt")  # runs before the fix stored Paths
    assert torch_state.load(tmp_path / "old.pt")["args"]["out"] == Path("out")
    marker = tmp_path / "pwned"
    plant(tmp_path / "planted.pt", marker)
    with pytest.raises(Exception, match="(?i)weights.only|unsupported global"):
        torch_state.load(tmp_path / "planted.pt")
    assert not marker.exists()


# ---- pixel and size caps ---------------------------------------------------------------------------------------
MESSAGE = "megapixels — resize it to at most 4096×4096"


def test_control_map_preview_refuses_an_over_cap_image_before_decoding_it(studio, tmp_path: Path) -> None:
    image = lazy_image(tmp_path)
    for kind in ("canny", "canny-map", "depth"):
        with pytest.raises(InvalidRequest, match=f"the control image \\(8000×7500\\) has more than 50 {MESSAGE}"):
            studio.control_map(kind, image)
    assert image.tile  # its pixels were never decoded (load() empties the tile list)
    assert not studio._maps
    with pytest.raises(Image.DecompressionBombError):
        lazy_image(tmp_path, HUGE)  # 144 MP: Pillow itself refuses to open it (Gradio's decode hits this too)


def test_control_map_cache_is_bounded_in_count_and_bytes(studio) -> None:
    for k in range(CONTROL_PREVIEWS_KEPT + 24):
        studio.control_map("canny-map", Image.new("L", (8, 8), k))
    assert len(studio._maps) == CONTROL_PREVIEWS_KEPT
    side = 3800  # 43.3 MB as RGB: seven of them pass the byte bound
    for k in range(7):
        studio.control_map("depth-map", Image.new("L", (side, side), k))
    kept = sum(m.width * m.height * len(m.getbands()) for m in studio._maps.values())
    assert kept <= CONTROL_PREVIEW_BYTES and len(studio._maps) < 7


def test_region_painting_refuses_an_over_cap_layer(tmp_path: Path) -> None:
    value = {"background": None, "layers": [zero_layer()], "composite": None}
    with pytest.raises(InvalidRequest, match=f"the painted layer \\(8000×7500\\) has more than 50 {MESSAGE}"):
        region_masks.regions_from_paint(value, {"red": "a cat"}, 64, 64)


def test_edit_panel_refuses_an_over_cap_init_image_or_mask(tmp_path: Path) -> None:
    stored: list[Image.Image] = []
    for value, what in (
        ({"background": zero_layer(channels=3), "layers": []}, "the init image"),
        ({"background": np.zeros((64, 64, 3), np.uint8), "layers": [zero_layer()]}, "the painted layer"),
    ):
        with pytest.raises(InvalidRequest, match=f"{what} \\(8000×7500\\) has more than 50 {MESSAGE}"):
            edit_panel.edit_fields("inpaint", value, 0.6, stored.append)
    assert not stored


def test_asset_store_refuses_an_over_cap_image_from_the_ui(studio, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match=f"has more than 50 {MESSAGE}"):
        studio.store.assets.put_image(lazy_image(tmp_path))
    assert not studio.store.assets.root.exists() or not any(studio.store.assets.root.iterdir())


def test_png_import_refuses_over_cap_images_and_files(studio, tmp_path: Path) -> None:
    for size in (OVER_CAP, HUGE):
        path = tmp_path / f"import_{size[0]}.png"
        path.write_bytes(png_header_only(*size))
        with pytest.raises(InvalidRequest, match=f"has more than 50 {MESSAGE}"):
            pngmeta.read_png_request(path)
        with pytest.raises(InvalidRequest, match="megapixels"):
            pngmeta.read_png_request(path.read_bytes())
    big = tmp_path / "big_file.png"
    big.write_bytes(png_header_only(64, 64))
    with big.open("r+b") as handle:
        handle.truncate(limits.MAX_IMAGE_BYTES + 1)  # sparse: no disk space used
    with pytest.raises(InvalidRequest, match="MiB — use a file under 64 MiB"):
        pngmeta.read_png_request(big)


def test_training_images_are_refused_over_the_caps(engine, tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(png_header_only(*OVER_CAP))
    with pytest.raises(InvalidRequest, match=f"training image 'big.png' \\(8000×7500\\) has more than 50 {MESSAGE}"):
        training_panel.load_images([str(path)])
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_header_only(*HUGE))
    with pytest.raises(InvalidRequest, match=MESSAGE):
        training_panel.load_images([str(huge)])
    eps = tmp_path / "vector.eps"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    with pytest.raises(InvalidRequest, match="not a supported image"):
        training_panel.load_images([str(eps)])  # no Ghostscript is ever run on an upload
    with pytest.raises(InvalidRequest, match="too many"):
        training_panel.load_images([str(path)] * 65)
    examples = [*tiny_examples(), TrainingExample(lazy_image(tmp_path), "a big one")]
    with pytest.raises(InvalidRequest, match=f"training image 5 \\(8000×7500\\) has more than 50 {MESSAGE}"):
        train_lora(engine, TrainingConfig("big", "zwx", rank=2, steps=2), examples, tmp_path / "loras")


# ---- JSON nesting ----------------------------------------------------------------------------------------------
def test_json_depth_scan_skips_strings_and_catches_unclosed_bombs() -> None:
    assert limits.json_depth('{"a": [1, {"b": "[[[[{{{{"}], "c": "\\"[["}') == 3
    assert limits.json_depth("[" * DEEP) == DEEP
    assert limits.json_depth(b"[[]" * 30 + b"]" * 30) == 31
    with pytest.raises(ValueError, match="nested deeper than 64"):
        limits.loads_json("[" * DEEP + "]" * DEEP)


def test_png_import_with_nested_json_metadata_is_not_a_crash(studio, tmp_path: Path) -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("flux_studio", "[" * DEEP + "]" * DEEP)
    info.add_text("prompt", '{"1": ' * 50_000 + "1" + "}" * 50_000)
    path = tmp_path / "nested.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    with pytest.raises(InvalidRequest, match="no generation metadata"):
        pngmeta.read_png_request(path)


# ---- prompt files ----------------------------------------------------------------------------------------------
def test_prompt_file_over_the_cap_exits_2_with_a_message(tmp_path: Path, monkeypatch) -> None:
    big = tmp_path / "prompts.txt"
    big.write_text("a red circle\n" * (limits.MAX_TEXT_FILE_BYTES // 13 + 100))
    env = {**os.environ, "STUDIO_DATA_DIR": str(tmp_path / "data"), "STUDIO_MODEL": str(MODEL), "STUDIO_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "studio", "generate", "--prompt-file", str(big), "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert json.loads(proc.stdout)["error"] == f"--prompt-file {big} is over 1024 KiB — split it into smaller files"
    many = tmp_path / "many.txt"
    many.write_text("a\n" * (limits.MAX_TEXT_FILE_LINES + 1))
    from studio.cli.main import main

    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STUDIO_MODEL", str(MODEL))
    assert main(["generate", "--prompt-file", str(many)]) == 2
