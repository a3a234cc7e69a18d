"""History store: records, search, pagination, files, migrations, shares — on real SQLite files."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from PIL import Image

from studio.core.errors import InvalidRequest, NotFound, StudioError
from studio.core.request import GenerationRequest
from studio.store import migrations, pngmeta
from studio.store.store import Store, default_url

RECORD_KEYS = {"id", "created_at", "status", "request", "images", "timings", "replay_of", "favourite", "tags"}


def make_request(prompt: str = "a red circle", **extra: object) -> dict:
    return GenerationRequest(
        prompt=prompt, model="m", width=64, height=64, steps=4, seed=1, guidance=3.5, **extra
    ).to_dict()


def image(color: str = "red") -> Image.Image:
    return Image.new("RGB", (64, 64), color)


def add(store: Store, prompt: str = "a red circle", n: int = 1, **extra: object) -> dict:
    return store.add(
        request=make_request(prompt),
        images=[image() for _ in range(n)],
        seeds=[1 + k for k in range(n)],
        timings={"total_s": 0.5},
        **extra,
    )


@pytest.fixture
def store(tmp_path: Path):
    with Store(default_url(tmp_path), tmp_path) as opened:
        yield opened


def image_files(data_dir: Path) -> list[Path]:
    folder = data_dir / "images"
    return sorted(folder.iterdir()) if folder.is_dir() else []


# ---- records -----------------------------------------------------------------------------------------
def test_add_writes_pngs_and_returns_the_interface_record(store: Store, tmp_path: Path) -> None:
    record = add(store, n=2)
    assert record.keys() >= RECORD_KEYS
    assert record["status"] == "done" and record["favourite"] is False and record["tags"] == []
    assert record["request"] == make_request() and record["timings"] == {"total_s": 0.5}
    assert record["replay_of"] is None and record["error"] is None
    assert datetime.fromisoformat(record["created_at"]).utcoffset() is not None
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{8}", record["id"])
    assert [im["seed"] for im in record["images"]] == [1, 2]
    for k, im in enumerate(record["images"]):
        path = Path(im["path"])
        assert path.is_absolute() and path == tmp_path / "images" / f"{record['id']}-{k}.png"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == im["sha256"]
    assert store.get(record["id"]) == record


def test_pngs_embed_the_request_and_their_own_seed_deterministically(store: Store) -> None:
    record = add(store, n=2)
    second = Path(record["images"][1]["path"])
    meta = json.loads(Image.open(second).text["flux_studio"])
    assert meta["request"] == record["request"] and meta["seed"] == 2 and "images" not in meta
    # nothing run-specific (id, time, timings) goes into the file: the same request gives the same bytes
    again = add(store, n=2)
    assert again["id"] != record["id"]
    assert [i["sha256"] for i in again["images"]] == [i["sha256"] for i in record["images"]]
    assert pngmeta.read_png_request(second) == {**make_request(), "seed": 2, "batch_size": 1}


def test_cancelled_and_failed_records_have_no_images(store: Store) -> None:
    cancelled = store.add(request=make_request(), images=[], seeds=[], timings={}, status="cancelled")
    failed = store.add(request=make_request(), images=[], seeds=[], timings={}, status="failed", error="out of memory")
    assert cancelled["images"] == [] and cancelled["status"] == "cancelled"
    assert store.get(failed["id"])["error"] == "out of memory"
    with pytest.raises(ValueError):
        store.add(request=make_request(), images=[image()], seeds=[1], timings={}, status="cancelled")


def test_replay_of_is_kept(store: Store) -> None:
    first = add(store)
    assert store.get(add(store, replay_of=first["id"])["id"])["replay_of"] == first["id"]


def test_get_unknown_id_is_not_found_naming_the_history_command(store: Store) -> None:
    for bad in ("nope", "../../etc/passwd", "x" * 500):
        with pytest.raises(NotFound, match="python -m studio history"):
            store.get(bad)


def test_list_is_newest_first_with_totals_and_pages(store: Store) -> None:
    ids = [add(store, f"prompt {k}")["id"] for k in range(5)]
    records, total = store.list()
    assert total == 5 and [r["id"] for r in records] == ids[::-1]
    page, total = store.list(limit=2, offset=2)
    assert total == 5 and [r["id"] for r in page] == [ids[2], ids[1]]
    assert store.list(limit=2, offset=4)[0][0]["id"] == ids[0]
    assert store.list(offset=10) == ([], 5)


def test_list_limits_are_checked(store: Store) -> None:
    for kwargs in ({"limit": 0}, {"limit": 501}, {"offset": -1}, {"limit": True}):
        with pytest.raises(InvalidRequest):
            store.list(**kwargs)
    assert store.list(limit=500) == ([], 0)


def test_search_is_a_case_insensitive_substring_of_prompt_and_negative_prompt(store: Store) -> None:
    store.add(request=make_request("A Red Circle"), images=[image()], seeds=[1], timings={})
    store.add(request=make_request("blue square", negative_prompt="RED tint"), images=[image()], seeds=[1], timings={})
    store.add(request=make_request("Été 100% zoom"), images=[image()], seeds=[1], timings={})
    store.add(request=make_request("green_triangle"), images=[image()], seeds=[1], timings={})
    assert store.list(search="red")[1] == 2
    assert store.list(search="  red circle ")[1] == 1
    assert store.list(search="été")[1] == 1  # not only ASCII
    assert store.list(search="100%")[1] == 1 and store.list(search="0%z")[1] == 0  # % is literal
    assert store.list(search="d_c")[1] == 0 and store.list(search="n_t")[1] == 1  # _ is literal
    assert store.list(search="")[1] == 4 and store.list(search=None)[1] == 4
    records, total = store.list(search="red", limit=1)
    assert total == 2 and len(records) == 1


def test_delete_removes_row_shares_and_image_files(store: Store, tmp_path: Path) -> None:
    keep = add(store, "keep me")
    gone = add(store, "delete me", n=2)
    token = store.share(gone["id"])
    store.delete(gone["id"])
    assert not any(Path(im["path"]).exists() for im in gone["images"])
    assert image_files(tmp_path) == [Path(keep["images"][0]["path"])]
    with pytest.raises(NotFound):
        store.get(gone["id"])
    with pytest.raises(NotFound):
        store.resolve_share(token)
    with pytest.raises(NotFound):
        store.delete(gone["id"])
    assert store.list() == ([store.get(keep["id"])], 1)


def test_favourite_and_tags_persist(store: Store) -> None:
    record = add(store)
    assert store.set_favourite(record["id"], True)["favourite"] is True
    assert store.set_tags(record["id"], [" best ", "portrait", "best", ""])["tags"] == ["best", "portrait"]
    again = store.get(record["id"])
    assert again["favourite"] is True and again["tags"] == ["best", "portrait"]
    for bad in ("best", ["x" * 100], ["a\nb"], [str(k) for k in range(40)], [1]):
        with pytest.raises(InvalidRequest):
            store.set_tags(record["id"], bad)  # type: ignore[arg-type]


# ---- durability ----------------------------------------------------------------------------------------
def test_sqlite_runs_in_wal_mode(store: Store, tmp_path: Path) -> None:
    add(store)
    with sqlite3.connect(tmp_path / "studio.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reopening_keeps_records_and_does_not_rerun_migrations(tmp_path: Path, monkeypatch) -> None:
    with Store(default_url(tmp_path), tmp_path) as first:
        record = add(first)
        assert first.schema_version == len(migrations.MIGRATIONS)
    calls: list[int] = []
    monkeypatch.setattr(migrations, "MIGRATIONS", tuple(lambda conn: calls.append(1) for _ in migrations.MIGRATIONS))
    with Store(default_url(tmp_path), tmp_path) as second:
        assert second.get(record["id"]) == record and second.list()[1] == 1
    assert calls == []
    with sqlite3.connect(tmp_path / "studio.db") as conn:
        versions = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
        assert versions == [(v,) for v in range(1, len(migrations.MIGRATIONS) + 1)]


def test_a_new_migration_runs_once_in_order(tmp_path: Path, monkeypatch) -> None:
    Store(default_url(tmp_path), tmp_path).close()
    calls: list[int] = []

    def add_note_column(conn) -> None:
        calls.append(2)
        conn.exec_driver_sql("ALTER TABLE generation ADD COLUMN note TEXT")

    newer = len(migrations.MIGRATIONS) + 1
    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, add_note_column))
    for _ in range(2):
        with Store(default_url(tmp_path), tmp_path) as reopened:
            assert reopened.schema_version == newer
            add(reopened)
    assert calls == [2]


def test_a_version_1_gallery_opens_in_this_version(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:1])
    Store(default_url(tmp_path), tmp_path).close()
    request = make_request("an old red circle")
    with sqlite3.connect(tmp_path / "studio.db") as conn:  # a row as version 1 wrote it
        conn.execute(
            "INSERT INTO generation (id, created_at, status, request, prompt, search_text, model, images, timings,"
            " replay_of, favourite, tags, error) VALUES ('old-1', '2026-01-01 00:00:00', 'done', ?, ?, ?, 'm', '[]',"
            " '{}', NULL, 0, '[]', NULL)",
            (json.dumps(request), request["prompt"], request["prompt"]),
        )
    monkeypatch.undo()
    with Store(default_url(tmp_path), tmp_path) as new:
        assert new.get("old-1")["request"] == request
        assert new.list(owner="someone")[1] == 0 and new.list(search="old red")[1] == 1


def test_owners_see_only_their_own_records(store: Store) -> None:
    mine = add(store, owner="alice-token")
    theirs = add(store, owner="bob-token")
    assert [r["id"] for r in store.list(owner="alice-token")[0]] == [mine["id"]]
    with pytest.raises(NotFound):
        store.get(theirs["id"], owner="alice-token")
    with pytest.raises(NotFound):
        store.delete(theirs["id"], owner="alice-token")
    with pytest.raises(NotFound):
        store.share(theirs["id"], owner="alice-token")
    assert "owner" not in mine  # the owner token is a secret: never in records
    assert store.list()[1] == 2  # single-user mode sees everything


def test_a_database_from_a_newer_studio_is_refused(tmp_path: Path) -> None:
    Store(default_url(tmp_path), tmp_path).close()
    with sqlite3.connect(tmp_path / "studio.db") as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (99, 'later')")
    with pytest.raises(StudioError, match="update Flux Studio"):
        Store(default_url(tmp_path), tmp_path)


def test_a_failing_insert_leaves_no_image_files(store: Store, tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "studio.db") as conn:
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON generation BEGIN SELECT RAISE(ABORT, 'refused'); END")
    with pytest.raises(Exception, match="refused"):
        add(store, n=3)
    assert image_files(tmp_path) == []
    assert store.list() == ([], 0)


def test_sweep_orphans_removes_old_image_files_without_a_row(store: Store, tmp_path: Path) -> None:
    record = add(store)
    stray = tmp_path / "images" / "20200101-000000-deadbeef-0.png"
    image().save(stray)
    assert store.sweep_orphans() == []  # too fresh: it may belong to an add in progress
    assert store.sweep_orphans(min_age_s=0) == [stray]
    assert image_files(tmp_path) == [Path(record["images"][0]["path"])]


def test_several_threads_share_one_store(store: Store) -> None:
    def work(k: int) -> None:
        for j in range(3):
            record = add(store, f"thread {k} image {j}")
            assert store.get(record["id"]) == record
            store.list(search=f"thread {k}")

    with ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(work, k) for k in range(4)]:
            future.result()  # re-raises any error from the thread
    assert store.list()[1] == 12


def test_a_locked_database_is_a_studio_error(tmp_path: Path) -> None:
    with Store(default_url(tmp_path), tmp_path, busy_timeout_s=0.1) as store:
        blocker = sqlite3.connect(tmp_path / "studio.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(StudioError, match="busy"):
                add(store)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert image_files(tmp_path) == []


def test_a_read_only_database_is_a_studio_error(tmp_path: Path) -> None:
    Store(default_url(tmp_path), tmp_path).close()
    url = f"sqlite:///file:{tmp_path / 'studio.db'}?mode=ro&uri=true"
    with (
        pytest.raises(StudioError, match="read-only — choose a writable STUDIO_DATA_DIR"),
        Store(url, tmp_path) as store,
    ):
        add(store)


# ---- shares --------------------------------------------------------------------------------------------
def test_share_tokens_are_long_random_and_reused(store: Store) -> None:
    first, second = add(store), add(store)
    token = store.share(first["id"])
    assert re.fullmatch(r"[A-Za-z0-9_-]{32,}", token)  # token_urlsafe(24): 192 bits
    assert store.share(first["id"]) == token
    assert store.share(second["id"]) != token
    assert store.resolve_share(token) == store.get(first["id"])


def test_unshare_revokes_and_a_new_share_gets_a_new_token(store: Store) -> None:
    record = add(store)
    token = store.share(record["id"])
    store.unshare(token)
    with pytest.raises(NotFound):
        store.resolve_share(token)
    with pytest.raises(NotFound):
        store.unshare(token)
    assert store.share(record["id"]) != token


def test_unknown_or_malformed_tokens_are_not_found(store: Store) -> None:
    store.share(add(store)["id"])
    for bad in ("../x", "", "a" * 500, "x" * 32, "abc def", None, "%2e%2e%2f" * 4):
        with pytest.raises(NotFound):
            store.resolve_share(bad)  # type: ignore[arg-type]
        with pytest.raises(NotFound):
            store.unshare(bad)  # type: ignore[arg-type]


def test_records_without_images_cannot_be_shared(store: Store) -> None:
    cancelled = store.add(request=make_request(), images=[], seeds=[], timings={}, status="cancelled")
    with pytest.raises(InvalidRequest):
        store.share(cancelled["id"])
    with pytest.raises(NotFound):
        store.share("missing")


def test_assets_live_under_the_data_dir(store: Store, tmp_path: Path) -> None:
    assert not (tmp_path / "assets").exists()  # created on the first write only
    ref = store.assets.put_image(image("blue"))
    assert store.assets.path(ref).parent == tmp_path / "assets" and store.assets.exists(ref)


def test_filters_by_status_and_favourite(store: Store) -> None:
    done = add(store)
    add(store, n=0, status="cancelled")
    store.set_favourite(done["id"], True)
    assert store.list(status="done")[1] == 1 and store.list(status="cancelled")[1] == 1
    assert [r["id"] for r in store.list(favourite=True)[0]] == [done["id"]]
    with pytest.raises(InvalidRequest, match="status"):
        store.list(status="weird")


# ---- gallery filters (history_query) ------------------------------------------------------------------
REF = "sha256:" + "ab" * 32


def add_request(store: Store, prompt: str, **fields: object) -> dict:
    request = {**make_request(prompt), **fields}
    return store.add(request=request, images=[image()], seeds=[1], timings={"total_s": 0.5})


def set_created(store: Store, record_id: str, moment: datetime) -> None:
    with store.db.write_engine.begin() as conn:
        conn.execute(sa.text("UPDATE generation SET created_at = :at WHERE id = :id"), {"at": moment, "id": record_id})


def test_filters_by_model_lora_regions_controls_and_tag(store: Store) -> None:
    plain = add_request(store, "a red circle")
    dev = add_request(
        store,
        "a red square",
        model="black-forest-labs/FLUX.1-dev",
        loras=[{"name": "Pixel-Art", "sha256": "0" * 64, "weight": 0.8}],
    )
    regional = add_request(store, "two cats", regions=[{"mask": REF, "prompt": "a cat"}])
    controlled = add_request(
        store,
        "a house",
        controls=[{"kind": "canny", "image": REF, "preprocess": True, "strength": 0.7, "start": 0.0, "end": 1.0}],
    )
    store.set_tags(plain["id"], ["Best", "portrait"])

    def ids(**kw: object) -> set[str]:
        records, total = store.list(**kw)
        assert total == len(records)
        return {r["id"] for r in records}

    assert ids(model="black-forest-labs/FLUX.1-dev") == {dev["id"]}
    assert ids(model="m") == {plain["id"], regional["id"], controlled["id"]}
    assert ids(lora="pixel") == ids(lora="ART") == {dev["id"]} and ids(lora="nothing") == set()
    assert ids(has_regions=True) == {regional["id"]} and ids(has_controls=True) == {controlled["id"]}
    assert ids(has_regions=False, has_controls=False) == {plain["id"], dev["id"]}
    assert ids(tag="best") == {plain["id"]} and ids(tag="bes") == set()  # whole tags, any case
    assert ids(search="red", model="m") == {plain["id"]}
    assert store.models() == ["black-forest-labs/FLUX.1-dev", "m"]


def test_date_range_and_sort(store: Store) -> None:
    from studio.store.query import parse_day

    old, mid, new = (add(store, p) for p in ("old one", "mid one", "new one"))
    for record, day in ((old, 1), (mid, 15), (new, 28)):
        set_created(store, record["id"], datetime(2025, 2, day, 12, tzinfo=UTC))
    span = {"since": parse_day("2025-02-10"), "until": parse_day("2025-02-28", end=True)}
    assert [r["id"] for r in store.list(**span)[0]] == [new["id"], mid["id"]]
    assert [r["id"] for r in store.list(sort="oldest")[0]] == [old["id"], mid["id"], new["id"]]
    assert [r["id"] for r in store.list(search="one", sort="oldest", limit=2, offset=1)[0]] == [mid["id"], new["id"]]
    assert [r["id"] for r in store.list(until=parse_day("2025-02-01", end=True))[0]] == [old["id"]]
    for bad, message in (
        ({"sort": "random"}, "sort"),
        ({"since": parse_day("2025-03-01"), "until": parse_day("2025-02-01")}, "date range"),
        ({"colour": "red"}, "unknown"),
    ):
        with pytest.raises(InvalidRequest, match=message):
            store.list(**bad)
    with pytest.raises(InvalidRequest, match="YYYY-MM-DD"):
        parse_day("yesterday")


def test_search_index_follows_inserts_deletes_and_short_needles(store: Store) -> None:
    keep = add(store, "a lighthouse at night")
    gone = add(store, "a lighthouse at dawn")
    assert store.list(search="LIGHTHOUSE")[1] == 2 and store.list(search="ighthou")[1] == 2  # substrings
    store.delete(gone["id"])
    assert [r["id"] for r in store.list(search="lighthouse")[0]] == [keep["id"]]
    assert store.list(search="at")[1] == 1 and store.list(search='"at night"')[1] == 0  # quotes are literal
    assert store.list(search="e a")[1] == 1  # short needles scan, same semantics


def test_a_version_2_gallery_gains_the_filter_columns_and_search_index(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:2])
    Store(default_url(tmp_path), tmp_path).close()
    request = {
        **make_request("a pixel castle"),
        "loras": [{"name": "pixel", "sha256": "0", "weight": 1.0}],
        "regions": [{"mask": REF, "prompt": "x"}],
    }
    with sqlite3.connect(tmp_path / "studio.db") as conn:  # a row as version 2 wrote it
        conn.execute(
            "INSERT INTO generation (id, created_at, status, request, prompt, search_text, model, images, timings,"
            " replay_of, favourite, tags, error, owner) VALUES ('old-2', '2026-01-01 00:00:00', 'done', ?, ?, ?,"
            " 'm', '[]', '{}', NULL, 0, '[]', NULL, NULL)",
            (json.dumps(request), request["prompt"], request["prompt"]),
        )
    monkeypatch.undo()
    with Store(default_url(tmp_path), tmp_path) as new:
        assert new.schema_version == len(migrations.MIGRATIONS) and new.fts
        assert new.list(lora="pixel", has_regions=True)[1] == 1 and new.list(search="castle")[1] == 1
