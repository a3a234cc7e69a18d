"""The bad-input table: every case exits 2 with a JSON error naming the problem, never a traceback.

Runs the real CLI entry point in-process (``studio.cli.main.main``) against a private data folder.
"""

from __future__ import annotations

import json
import zlib

import pytest
from PIL import Image

from studio.cli.main import main
from tests.conftest import MODEL

PROMPT = "a red circle in the top left on a white background"


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STUDIO_MODEL", str(MODEL))
    monkeypatch.setenv("STUDIO_THREADS", "1")
    monkeypatch.setenv("STUDIO_LORA_DIRS", str(tmp_path / "loras"))
    (tmp_path / "loras").mkdir()
    good = tmp_path / "good.png"
    Image.new("RGB", (64, 64), "white").save(good)
    data = good.read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    (tmp_path / "bomb.png").write_bytes(_png_bomb())
    (tmp_path / "loras" / "empty.safetensors").write_bytes(b"")
    (tmp_path / "loras" / "old.ckpt").write_bytes(b"\x80\x02}q\x00.")
    (tmp_path / "loras" / "cut.safetensors").write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a":')
    (tmp_path / "sched.json").write_text("{not json")
    return tmp_path


def _png_bomb() -> bytes:
    """A tiny PNG whose header claims 100000 x 100000 pixels."""
    import struct

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


GEN = ["generate", "--prompt", PROMPT]
CASES = [
    # numbers
    (GEN + ["--guidance", "nan"], "finite"),
    (GEN + ["--guidance", "inf"], "finite"),
    (GEN + ["--guidance", "-1"], "guidance must be from 0"),
    (GEN + ["--guidance", "1e9"], "guidance must be from 0"),
    (GEN + ["--true-cfg", "nan"], "finite"),
    (GEN + ["--true-cfg", "-2"], "true_cfg must be from 0"),
    (GEN + ["--true-cfg", "1e6"], "true_cfg must be from 0"),
    (GEN + ["--steps", "0"], "steps must be from 1 to 200"),
    (GEN + ["--steps", "10000"], "steps must be from 1 to 200"),
    (GEN + ["--width", "0"], "width must be a whole number from 16"),
    (GEN + ["--width", "15"], "width must be a whole number from 16"),
    (GEN + ["--width", "100000"], "from 16 to 4096"),
    (GEN + ["--width", "100"], "multiple of 16"),
    (GEN + ["--height", "17"], "multiple of 16"),
    (GEN + ["--seed", "-1"], "seed must be from 0"),
    (GEN + ["--seed", str(2**40)], "seed must be from 0"),
    (GEN + ["--batch", "0"], "batch_size must be from 1"),
    (GEN + ["--batch", "99"], "batch_size must be from 1"),
    (GEN + ["--init-image", "{tmp}/good.png", "--strength", "-0.5"], "strength must be from 0"),
    (GEN + ["--init-image", "{tmp}/good.png", "--strength", "2"], "strength must be from 0"),
    (GEN + ["--init-image", "{tmp}/good.png", "--strength", "nan"], "finite"),
    (GEN + ["--width", "abc"], "invalid int"),
    # prompts
    (["generate", "--prompt", ""], "--prompt is required"),
    (["generate", "--prompt", "   "], "prompt is empty"),
    (["generate", "--prompt", "x" * 100_000], "shorten it"),
    (["generate", "--prompt", "a\x01b"], "control characters"),
    (["generate"], "--prompt is required"),
    # schedules
    (GEN + ["--schedule", "{bad"], "not valid JSON"),
    (GEN + ["--schedule", "@{tmp}/sched.json"], "not valid JSON"),
    (GEN + ["--schedule", "@{tmp}/missing.json"], "cannot read schedule file"),
    (GEN + ["--schedule", '{"guidance": [[1.5, 2]]}'], "between 0 and 1"),
    (GEN + ["--schedule", '{"guidance": [[0.8, 2], [0.2, 1]]}'], "sorted"),
    (GEN + ["--schedule", '{"speed": [[0, 1]]}'], "unknown schedule channel"),
    (GEN + ["--schedule", '"fast"'], "JSON object"),
    # images
    (GEN + ["--init-image", "{tmp}/corrupt.png"], "corrupt"),
    (GEN + ["--init-image", "{tmp}/truncated.png"], "truncated"),
    (GEN + ["--init-image", "{tmp}/bomb.png"], "megapixels"),
    (GEN + ["--init-image", "{tmp}/nothing.png"], "does not exist"),
    (GEN + ["--region", "{tmp}/good.png:"], "MASK_PNG:PROMPT"),
    (GEN + ["--control", "sketch:{tmp}/good.png"], "control kind"),
    (GEN + ["--control", "canny"], "KIND:IMAGE"),
    # LoRAs
    (GEN + ["--lora", "empty"], "empty"),
    (GEN + ["--lora", "{tmp}/loras/old.ckpt"], "pickle"),
    (GEN + ["--lora", "cut"], "truncated"),
    (GEN + ["--lora", "missing:0.5"], "no LoRA named 'missing'"),
    (GEN + ["--lora", "x:9"], "from -4 to 4"),
    # models, caches
    (GEN + ["--model", "/etc"], "STUDIO_MODELS"),
    (GEN + ["--cache", "turbo"], "cache 'turbo' is unknown"),
    (GEN + ["--cache", "fbcache:-1"], "cache threshold"),
    # records and share tokens
    (["show", "no-such-id"], "history"),
    (["delete", "no-such-id"], "history"),
    (["replay", "no-such-id"], "history"),
    (["unshare", "unknown-token-aaaaaaaaaaaa"], "share"),
    (["unshare", "../../etc/passwd"], "share"),
    (["unshare", "a" * 500], "share"),
    (["import-png", "{tmp}/corrupt.png"], "corrupt"),
    (["import-png", "{tmp}/good.png"], "no generation metadata"),
    (["history", "--limit", "0"], "limit"),
    # resources ("ENV:NAME=VALUE" sets an environment variable for the case)
    (["ENV:STUDIO_MAX_MEMORY_MB=400", *GEN, "--width", "4096", "--height", "4096"], "largest square size that fits"),
    (["ENV:STUDIO_MAX_MEMORY_MB=abc", *GEN], "not a positive number of megabytes"),
    (["ENV:STUDIO_MIN_FREE_MB=1e12", *GEN], "free on the disk holding"),
    (["ENV:STUDIO_MIN_FREE_MB=-5", *GEN], "megabytes ≥ 0"),
    (["ENV:STUDIO_DATA_DIR={tmp}/good.png", "history"], "as the data folder"),
]


@pytest.mark.parametrize("argv, fragment", CASES, ids=[f"{i:02d}" for i in range(len(CASES))])
def test_bad_input_exits_2_with_a_message_naming_the_problem(env, capsys, monkeypatch, argv, fragment):
    argv = [arg.replace("{tmp}", str(env)) for arg in argv]
    for setting in [arg for arg in argv if arg.startswith("ENV:")]:
        monkeypatch.setenv(*setting.removeprefix("ENV:").split("=", 1))
    argv = [arg for arg in argv if not arg.startswith("ENV:")]
    code = main([*argv, "--json"])
    out = capsys.readouterr()
    assert code == 2, out.err[-1500:]
    error = json.loads(out.out)["error"]
    assert fragment.lower() in error.lower(), error
    assert "Traceback" not in out.err


def test_the_table_is_large_enough():
    assert len(CASES) >= 40
