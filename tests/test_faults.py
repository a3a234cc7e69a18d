"""Faults: too little memory (refused before allocating, with the largest size that fits), a full or read-only
data disk, a data folder blocked by a file, a locked database — a clear message, nothing half-written, and the
studio keeps serving. Real files, real SQLite, the real pipeline on the embedded model; the full and read-only
disks are real tmpfs mounts (skipped where this process may not mount)."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from studio.core.errors import InsufficientMemory, StorageError, StudioError
from studio.core.request import GenerationRequest
from studio.engine import memory_estimate
from studio.service import Studio
from studio.store.store import Store
from tests.conftest import MODEL, ROOT

PROMPT = "a red circle in the top left on a white background"


def pngs(root: Path) -> list[Path]:
    """Every PNG (and temp file) under ``root``."""
    return sorted(p for p in root.rglob("*") if p.is_file() and (p.suffix == ".png" or p.name.startswith(".tmp-")))


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def studio_on(engine, data: Path, db_url: str = "", busy_timeout_s: float = 5.0, min_free_mb: str = "") -> Studio:
    """A Studio on the shared engine with its history in ``data`` (or ``db_url``)."""
    from studio.core import settings as settings_mod

    env = {"STUDIO_MODEL": str(MODEL), "STUDIO_DATA_DIR": str(data)}
    if min_free_mb:
        env["STUDIO_MIN_FREE_MB"] = min_free_mb
    if db_url:
        env["STUDIO_DB_URL"] = db_url
    settings = settings_mod.from_env(env)
    return Studio(settings, engine=engine, store=Store(settings.db_url, settings.data_dir, busy_timeout_s))


# ---- memory -------------------------------------------------------------------------------------------
def capped(studio, monkeypatch, megabytes: float) -> None:
    """The Studio's settings as if started with STUDIO_MAX_MEMORY_MB=megabytes."""
    monkeypatch.setattr(studio, "settings", studio.settings.with_overrides(max_memory_mb=megabytes))


def test_too_large_size_is_refused_before_allocating_with_the_largest_size_that_fits(studio, monkeypatch):
    capped(studio, monkeypatch, 400.0)
    phases: list[str] = []
    with pytest.raises(InsufficientMemory) as refused:
        studio.generate(GenerationRequest(prompt=PROMPT, seed=1, width=1024, height=4096), on_phase=phases.append)
    message = str(refused.value)
    match = re.fullmatch(
        r"1024×4096 needs ~[\d.]+ GiB but ~400 MiB is free — the largest square size that fits is (\d+)×\1 "
        r"\(or raise STUDIO_MAX_MEMORY_MB\)",
        message,
    )
    assert match, message
    assert phases == ["check"]  # refused before the engine ran: nothing was allocated
    assert studio.store.list()[1] == 0
    with pytest.raises(InsufficientMemory):  # live previews too
        studio.preview(GenerationRequest(prompt=PROMPT, seed=1, width=1024, height=4096))
    side = int(match.group(1))
    assert side % 16 == 0 and 256 <= side < 1024
    record = studio.generate(GenerationRequest(prompt=PROMPT, seed=1, width=side, height=side, steps=1))
    assert record["status"] == "done" and len(record["images"]) == 1  # the suggested size runs under the cap


def test_a_batch_too_large_names_the_single_image_size_too(studio, monkeypatch):
    from studio.core import settings as settings_mod

    capped(studio, monkeypatch, 400.0)
    with pytest.raises(InsufficientMemory, match=r"× 16 images needs .* with batch 1\)"):
        studio.generate(GenerationRequest(prompt=PROMPT, seed=1, width=512, height=512, batch_size=16))
    capped(studio, monkeypatch, 1.0)
    with pytest.raises(InsufficientMemory, match="not even 16×16 fits — free memory"):
        studio.generate(GenerationRequest(prompt=PROMPT, seed=1))
    with pytest.raises(StudioError, match="STUDIO_MAX_MEMORY_MB='lots' is not a positive number"):
        settings_mod.from_env({"STUDIO_MAX_MEMORY_MB": "lots"})  # refused when the settings are read, at start


def test_the_estimate_grows_with_size_and_batch_and_reads_the_model_config(engine):
    shape = memory_estimate.shape_of(engine.pipe, 32)
    assert (shape.width, shape.heads, shape.vae_channels, shape.vae_scale) == (192, 6, (32, 64, 128, 128), 8)
    sizes = [memory_estimate.estimate_bytes(shape, s, s) for s in (64, 256, 512, 1024, 2048)]
    assert sizes == sorted(sizes) and sizes[-1] > 3 * sizes[-2]
    one, four = (memory_estimate.estimate_bytes(shape, 512, 512, b) for b in (1, 4))
    assert four > 3 * (one - memory_estimate.OVERHEAD)
    # regional prompts: a tokens² mask and unfused attention (at 1024² the VAE decode still sets the peak)
    assert memory_estimate.denoise_bytes(shape, 1024, 1024, regions=2) > memory_estimate.denoise_bytes(
        shape, 1024, 1024
    )
    assert memory_estimate.estimate_bytes(shape, 2048, 2048, regions=2) > sizes[4]
    budget = 500 * 2**20
    side = memory_estimate.largest_square(shape, budget)
    assert (
        memory_estimate.estimate_bytes(shape, side, side)
        <= budget
        < memory_estimate.estimate_bytes(shape, side + 16, side + 16)
    )


MEASURE = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from studio.engine import memory_estimate
    from studio.core import settings
    from studio.engine.engine import Engine
    from studio.core.request import GenerationRequest
    engine = Engine(settings.from_env({"STUDIO_MODEL": sys.argv[1], "STUDIO_DATA_DIR": sys.argv[2]}, threads=1))
    engine.ensure()
    engine.generate(GenerationRequest(prompt="warm up", seed=1, steps=1))
    def status(key):
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(key))
        return int(line.split()[1]) * 1024
    size = int(sys.argv[3])
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak RSS (VmHWM) to the current RSS
    before = status("VmRSS:")
    engine.generate(GenerationRequest(prompt="a red circle", seed=1, width=size, height=size, steps=1))
    peak = status("VmHWM:") - before
    estimate = memory_estimate.estimate_bytes(memory_estimate.shape_of(engine.pipe, 32), size, size)
    print(json.dumps({"peak": peak, "estimate": estimate}))
""")


@pytest.mark.slow
def test_the_estimate_covers_the_measured_peak(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(MODEL), str(tmp_path), "512"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**_env(), "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"512×512: measured peak {figures['peak'] / 2**20:.0f} MiB, estimate {figures['estimate'] / 2**20:.0f} MiB")
    assert figures["peak"] <= figures["estimate"] <= 3 * figures["peak"]


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "STUDIO_MAX_MEMORY_MB"}


# ---- disk: below the threshold, a file in the way, a locked database ----------------------------------
def test_too_little_disk_space_is_refused_before_generating(studio, monkeypatch):
    plain = studio.settings
    monkeypatch.setattr(studio, "settings", plain.with_overrides(min_free_mb=1e12))  # STUDIO_MIN_FREE_MB=1e12
    phases: list[str] = []
    with pytest.raises(
        StorageError,
        match=r"MB free on the disk holding .* — free some space, choose another "
        r"STUDIO_DATA_DIR, or lower STUDIO_MIN_FREE_MB",
    ) as refused:
        studio.generate(GenerationRequest(prompt=PROMPT, seed=1), on_phase=phases.append)
    assert "Traceback" not in str(refused.value) and phases == ["check"]
    assert studio.store.list()[1] == 0
    monkeypatch.setattr(studio, "settings", plain)
    assert studio.generate(GenerationRequest(prompt=PROMPT, seed=1))["status"] == "done"


def test_a_file_in_the_way_of_the_images_folder_fails_cleanly_and_the_studio_keeps_serving(studio):
    data = studio.store.data_dir
    blocker = data / "images"
    blocker.write_text("not a folder")
    with pytest.raises(
        StorageError,
        match=r"the images were not saved: cannot write into .*images \(a file is in "
        r"the way of the folder\) — make it a writable folder",
    ):
        studio.generate(GenerationRequest(prompt=PROMPT, seed=2))
    assert pngs(data) == []
    records, total = studio.store.list()
    assert total == 1 and records[0]["status"] == "failed" and not records[0]["images"]  # the request is kept
    blocker.unlink()
    record = studio.generate(GenerationRequest(prompt=PROMPT, seed=2))
    assert record["status"] == "done" and Path(record["images"][0]["path"]).is_file()
    assert integrity(data / "studio.db") == "ok"


def test_a_data_folder_that_is_a_file_is_a_message_not_a_traceback(tmp_path):
    from studio.core import settings as settings_mod

    afile = tmp_path / "afile"
    afile.write_text("x")
    for data in (afile, afile / "below"):
        with pytest.raises(StorageError, match="as the data folder .* — set STUDIO_DATA_DIR to a writable folder"):
            Studio(settings_mod.from_env({"STUDIO_MODEL": str(MODEL), "STUDIO_DATA_DIR": str(data)}))


def test_a_locked_database_at_save_time_leaves_no_orphan_png(engine, data_dir):
    studio = studio_on(engine, data_dir, busy_timeout_s=0.3)
    try:
        assert studio.generate(GenerationRequest(prompt=PROMPT, seed=1))["status"] == "done"
        holder = sqlite3.connect(data_dir / "studio.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another program holds the write lock
        try:
            with pytest.raises(StorageError, match="the images were not saved: the history database .* is busy"):
                studio.generate(GenerationRequest(prompt=PROMPT, seed=2))
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert len(pngs(data_dir)) == 1  # the first record's image; the second's PNG was removed
        assert studio.store.list()[1] == 1
        assert studio.generate(GenerationRequest(prompt=PROMPT, seed=3))["status"] == "done"
        assert integrity(data_dir / "studio.db") == "ok"
    finally:
        studio.close()


# ---- disk: a real full and a real read-only file system (tmpfs) ---------------------------------------
@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted for the test (skipped where mounting is not allowed)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()[:120]})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> Path:
    """Fill the file system holding ``path`` to the last byte; return the filler file."""
    filler = path / "filler"
    with open(filler, "wb", buffering=0) as fh:
        for chunk in (65536, 4096, 512, 1):
            try:
                while fh.write(b"\0" * chunk):
                    pass
            except OSError:
                pass
    return filler


def test_a_full_disk_fails_cleanly_loses_nothing_and_recovers(engine, tiny_fs):
    studio = studio_on(engine, tiny_fs / "data", min_free_mb="0")  # reach the real write (the pre-check would refuse)
    try:
        first = studio.generate(GenerationRequest(prompt=PROMPT, seed=1))
        filler = fill(tiny_fs)
        with pytest.raises(
            StorageError,
            match="the images were not saved: the disk holding .* is full — free "
            "some space or choose another STUDIO_DATA_DIR",
        ):
            studio.generate(GenerationRequest(prompt=PROMPT, seed=2))
        assert pngs(tiny_fs / "data") == [Path(first["images"][0]["path"])]  # no half-written PNG or temp file
        done = [r for r in studio.store.list()[0] if r["status"] == "done"]
        assert [r["id"] for r in done] == [first["id"]]
        filler.unlink()
        assert studio.generate(GenerationRequest(prompt=PROMPT, seed=3))["status"] == "done"
    finally:
        studio.close()
    assert integrity(tiny_fs / "data" / "studio.db") == "ok"


def test_below_the_free_space_threshold_by_default_on_a_small_disk(engine, tiny_fs):
    studio = studio_on(engine, tiny_fs / "data")
    try:
        with pytest.raises(StorageError, match=r"only \d MB free on the disk holding .* \(at least 200 MB needed\)"):
            studio.generate(GenerationRequest(prompt=PROMPT, seed=1))
    finally:
        studio.close()


def test_a_read_only_images_disk_fails_cleanly_and_recovers(engine, tiny_fs, data_dir):
    (tiny_fs / "images").mkdir()
    studio = studio_on(engine, tiny_fs, db_url=f"sqlite:///{data_dir / 'studio.db'}", min_free_mb="0")  # tmpfs images
    try:
        first = studio.generate(GenerationRequest(prompt=PROMPT, seed=1))
        subprocess.run(["mount", "-o", "remount,ro", str(tiny_fs)], check=True)
        try:
            with pytest.raises(
                StorageError,
                match=r"(?i)the images were not saved: .*read-only.* — .*choose "
                r"(a writable|another) STUDIO_DATA_DIR",
            ):
                studio.generate(GenerationRequest(prompt=PROMPT, seed=2))
            records = {r["request"]["seed"]: r for r in studio.store.list()[0]}
            assert records[1]["status"] == "done" and records[2]["status"] == "failed" and not records[2]["images"]
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(tiny_fs)], check=True)
        assert pngs(tiny_fs) == [Path(first["images"][0]["path"])]
        assert studio.replay(records[2]["id"])["status"] == "done"  # nothing lost: the request replays
    finally:
        studio.close()
    assert integrity(data_dir / "studio.db") == "ok"


def test_a_read_only_data_disk_at_start_is_a_message(engine, tiny_fs):
    studio_on(engine, tiny_fs / "data").close()  # an existing history
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_fs)], check=True)
    try:
        with pytest.raises(StudioError, match="STUDIO_DATA_DIR"):
            studio_on(engine, tiny_fs / "data")
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(tiny_fs)], check=True)


# ---- kill -9 between the PNG write and the database row ------------------------------------------------
SAVE_THEN_WAIT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from studio.core import settings
    from studio.core.request import GenerationRequest
    from studio.service import Studio
    marks = Path(sys.argv[2])
    def on_phase(name):
        if name == "save":  # tell the test, then wait until it holds the database's write lock
            (marks / "saving").touch()
            while not (marks / "locked").exists():
                time.sleep(0.01)
    studio = Studio(settings.from_env({"STUDIO_MODEL": sys.argv[1], "STUDIO_DATA_DIR": str(marks / "data")}))
    studio.generate(GenerationRequest(prompt="a red circle", seed=1), on_phase=on_phase)
""")


@pytest.mark.slow
def test_kill_9_between_png_and_row_leaves_an_orphan_that_is_swept(tmp_path):
    import os
    import signal
    import time

    data = tmp_path / "data"
    Store(f"sqlite:///{data / 'studio.db'}", data).close()  # the history exists (migrations done)
    child = subprocess.Popen(
        [sys.executable, "-c", SAVE_THEN_WAIT, str(MODEL), str(tmp_path)],
        cwd=ROOT,
        env={**_env(), "PYTHONPATH": str(ROOT), "STUDIO_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    holder = sqlite3.connect(data / "studio.db", isolation_level=None)
    try:
        deadline = time.monotonic() + 240
        while not (tmp_path / "saving").exists():
            assert child.poll() is None and time.monotonic() < deadline, child.stderr.read()[-2000:]
            time.sleep(0.05)
        holder.execute("BEGIN IMMEDIATE")  # the child's insert will wait on this lock ...
        (tmp_path / "locked").touch()
        while not pngs(data / "images"):  # ... after it wrote its PNG
            assert child.poll() is None and time.monotonic() < deadline, child.stderr.read()[-2000:]
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)  # killed mid-write: PNG on disk, no row
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()
    orphans = pngs(data / "images")
    assert len(orphans) == 1 and orphans[0].suffix == ".png"  # the atomic write left a whole file, no temp file
    with Store(f"sqlite:///{data / 'studio.db'}", data) as store:
        assert store.list()[1] == 0  # no half record
        assert store.sweep_orphans(min_age_s=0) == orphans
    assert pngs(data) == [] and integrity(data / "studio.db") == "ok"
