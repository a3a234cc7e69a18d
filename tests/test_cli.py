"""``python -m studio`` as a user runs it: real subprocesses, real files, exact JSON on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import MODEL, ROOT

PROMPT = "a red circle in the top left on a white background"


def run_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "STUDIO_DATA_DIR": str(data_dir), "STUDIO_MODEL": str(MODEL), "STUDIO_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "studio", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def run_json(data_dir: Path, *args: str, code: int = 0) -> dict:
    proc = run_cli(data_dir, *args, "--json")
    assert proc.returncode == code, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout)  # exactly one JSON object and nothing else


@pytest.mark.slow
def test_generate_twice_same_bytes_then_replay_history_show_delete(data_dir, tmp_path):
    out = run_json(data_dir, "generate", "--prompt", PROMPT, "--seed", "1", "--out", str(tmp_path / "copies"))
    assert set(out) >= {"id", "images", "seed", "request", "timings"}
    assert out["seed"] == 1 and set(out["timings"]) >= {"load_s", "denoise_s", "total_s"}
    image = Path(out["images"][0])
    assert image.is_absolute() and image.is_file() and (tmp_path / "copies" / image.name).is_file()
    again = run_json(data_dir, "generate", "--prompt", PROMPT, "--seed", "1")
    assert Path(again["images"][0]).read_bytes() == image.read_bytes()

    replay = run_json(data_dir, "replay", out["id"])
    assert replay["replay_of"] == out["id"]
    assert np.array_equal(np.asarray(Image.open(replay["images"][0])), np.asarray(Image.open(image)))

    history = run_json(data_dir, "history", "--search", "RED CIRCLE", "--limit", "2")
    assert history["total"] == 3 and len(history["records"]) == 2
    assert history["records"][0]["id"] == replay["id"]  # newest first
    assert run_json(data_dir, "show", out["id"])["request"]["prompt"] == PROMPT
    imported = run_json(data_dir, "import-png", str(image))
    assert imported["prompt"] == PROMPT and imported["seed"] == 1

    assert run_json(data_dir, "delete", out["id"]) == {"deleted": out["id"]}
    assert not image.exists()
    missing = run_json(data_dir, "show", out["id"], code=2)
    assert "history" in missing["error"]


@pytest.mark.slow
def test_prompt_file_loads_once_and_returns_one_result_per_line(data_dir, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f"{PROMPT}\n\na blue square in the center on a black background\n")
    out = run_json(data_dir, "generate", "--prompt-file", str(prompts), "--seed", "4", "--steps", "2")
    results = out["results"]
    assert [r["request"]["prompt"] for r in results] == [PROMPT, "a blue square in the center on a black background"]
    assert results[0]["timings"]["load_s"] > 0 and results[1]["timings"]["load_s"] < 0.05


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["generate", "--prompt", ""], "prompt"),
        (["generate", "--prompt", "x", "--width", "100"], "multiple of 16"),
        (["generate", "--prompt", "x", "--steps", "0"], "steps"),
        (["generate", "--prompt", "x", "--guidance", "nan"], "finite"),
        (["generate", "--prompt", "x", "--schedule", "{bad json"], "not valid JSON"),
        (["generate", "--prompt", "x", "--width", "abc"], "invalid int"),
        (["import-png", "/nonexistent.png"], "does not exist"),
    ],
)
def test_bad_input_exits_2_with_a_json_error(data_dir, args, fragment):
    out = run_json(data_dir, *args, code=2)
    assert fragment in out["error"]


def test_bad_input_without_json_goes_to_stderr(data_dir):
    proc = run_cli(data_dir, "generate", "--prompt", "x", "--steps", "0")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "steps must be from 1 to 200" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_generate_is_quiet_on_stderr_and_verbose_shows_progress(data_dir):
    """Only the studio's own lines on stderr (none for a clean run): no library warnings, no progress bars."""
    args = ("generate", "--prompt", PROMPT, "--steps", "1", "--json")
    proc = run_cli(data_dir, *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr == "", proc.stderr[-2000:]
    out = json.loads(proc.stdout)  # exactly one JSON object: json.loads refuses anything after it
    assert proc.stdout.strip().count("\n") == 0 and out["status"] == "done"

    loud = run_cli(data_dir, *args, "--verbose")
    assert loud.returncode == 0, loud.stderr[-2000:]
    assert "Loading pipeline components" in loud.stderr and "it/s" in loud.stderr, loud.stderr[-2000:]
    assert json.loads(loud.stdout)["status"] == "done"
