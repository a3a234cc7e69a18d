"""History store on a real PostgreSQL server: the SQLite spec (tests/test_history.py) rerun, plus what differs.

The server is ``STUDIO_TEST_PG_URL`` (e.g. ``postgresql+psycopg://studio:studio@127.0.0.1:5432/studio_test``; `.ci/run`
starts a throwaway one and sets it). Unset, these tests skip — except under CI (``CI=true``), where they fail. Each
test gets a fresh schema (``search_path``), dropped afterwards, so tests are independent of each other and of
whatever else is in the database.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
import test_history as spec  # the store's spec; its backend-neutral tests run here again, on PostgreSQL
from test_history import add, image_files

from studio.core.errors import NotFound, StudioError
from studio.store import migrations
from studio.store.store import Store

ENV = "STUDIO_TEST_PG_URL"
SHARED = (  # tests of test_history.py that need nothing SQLite-specific: collected here with the fixture below
    "test_add_writes_pngs_and_returns_the_interface_record",
    "test_pngs_embed_the_request_and_their_own_seed_deterministically",
    "test_cancelled_and_failed_records_have_no_images",
    "test_replay_of_is_kept",
    "test_get_unknown_id_is_not_found_naming_the_history_command",
    "test_list_is_newest_first_with_totals_and_pages",
    "test_list_limits_are_checked",
    "test_search_is_a_case_insensitive_substring_of_prompt_and_negative_prompt",
    "test_delete_removes_row_shares_and_image_files",
    "test_favourite_and_tags_persist",
    "test_owners_see_only_their_own_records",
    "test_sweep_orphans_removes_old_image_files_without_a_row",
    "test_several_threads_share_one_store",
    "test_share_tokens_are_long_random_and_reused",
    "test_unshare_revokes_and_a_new_share_gets_a_new_token",
    "test_unknown_or_malformed_tokens_are_not_found",
    "test_records_without_images_cannot_be_shared",
    "test_assets_live_under_the_data_dir",
    "test_filters_by_model_lora_regions_controls_and_tag",
    "test_date_range_and_sort",
    "test_search_index_follows_inserts_deletes_and_short_needles",
)
globals().update({name: getattr(spec, name) for name in SHARED})


def server_url() -> str:
    url = os.environ.get(ENV, "")
    if url:
        return url
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"{ENV} is unset under CI: .ci/run must start PostgreSQL and export it", pytrace=False)
    pytest.skip(
        f"{ENV} is unset — set it to a PostgreSQL database to run these, e.g. "
        "postgresql+psycopg://studio:studio@127.0.0.1:5432/studio_test (bash .ci/run starts a server and sets it)"
    )


def with_settings(url: str, **settings: str) -> str:
    """``url`` with server settings for its sessions (libpq ``options``), e.g. ``search_path``."""
    parsed = sa.make_url(url)
    given = parsed.query.get("options", "")
    extra = " ".join(f"-c{name}={value}" for name, value in settings.items())
    return parsed.update_query_dict({"options": f"{given} {extra}".strip()}).render_as_string(hide_password=False)


def sql(url: str, statement: str) -> list[tuple]:
    """Run one statement on ``url`` in its own transaction; the rows it returns."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.exec_driver_sql(statement)
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def server() -> Iterator[sa.Engine]:
    engine = sa.create_engine(server_url())
    try:
        engine.connect().close()
    except sa.exc.OperationalError as exc:
        pytest.fail(f"cannot connect to the PostgreSQL server at {ENV}: {exc.orig}", pytrace=False)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_url(server: sa.Engine) -> Iterator[str]:
    """The test server's URL with a fresh, empty schema as the search path."""
    schema = f"studio_test_{secrets.token_hex(6)}"
    with server.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    yield with_settings(server.url.render_as_string(hide_password=False), search_path=schema)
    with server.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def store(pg_url: str, tmp_path: Path) -> Iterator[Store]:
    """Overrides test_history's fixture for the SHARED tests: the same store, on PostgreSQL."""
    with Store(pg_url, tmp_path) as opened:
        yield opened


# ---- migrations --------------------------------------------------------------------------------------------
def test_reopening_keeps_records_and_does_not_rerun_migrations_on_postgres(pg_url, tmp_path, monkeypatch) -> None:
    with Store(pg_url, tmp_path) as first:
        record = add(first)
        assert first.schema_version == len(migrations.MIGRATIONS)
    calls: list[int] = []
    monkeypatch.setattr(migrations, "MIGRATIONS", tuple(lambda conn: calls.append(1) for _ in migrations.MIGRATIONS))
    with Store(pg_url, tmp_path) as second:
        assert second.get(record["id"]) == record and second.list()[1] == 1
    assert calls == []
    versions = sql(pg_url, "SELECT version FROM schema_migrations ORDER BY version")
    assert versions == [(v,) for v in range(1, len(migrations.MIGRATIONS) + 1)]


def test_a_new_migration_runs_once_in_order_on_postgres(pg_url, tmp_path, monkeypatch) -> None:
    Store(pg_url, tmp_path).close()
    calls: list[int] = []

    def add_note_column(conn) -> None:
        calls.append(1)
        conn.exec_driver_sql("ALTER TABLE generation ADD COLUMN note TEXT")

    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, add_note_column))
    for _ in range(2):
        with Store(pg_url, tmp_path) as reopened:
            assert reopened.schema_version == len(migrations.MIGRATIONS)
            add(reopened)
    assert calls == [1]


def test_stores_opening_at_once_migrate_once(pg_url, tmp_path) -> None:
    start = threading.Barrier(4)

    def open_store(_: int) -> int:
        start.wait()
        with Store(pg_url, tmp_path) as opened:
            return opened.schema_version

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(open_store, range(4))) == [len(migrations.MIGRATIONS)] * 4
    assert sql(pg_url, "SELECT count(*) FROM schema_migrations") == [(len(migrations.MIGRATIONS),)]


def test_a_failed_migration_leaves_the_schema_as_it_was(pg_url, tmp_path, monkeypatch) -> None:
    Store(pg_url, tmp_path).close()

    def half_done(conn) -> None:
        conn.exec_driver_sql("ALTER TABLE generation ADD COLUMN note TEXT")
        raise RuntimeError("migration bug")

    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, half_done))
    with pytest.raises(RuntimeError, match="migration bug"):
        Store(pg_url, tmp_path)
    monkeypatch.undo()
    columns = sql(pg_url, "SELECT column_name FROM information_schema.columns WHERE table_name = 'generation'"
                  " AND table_schema = current_schema()")  # fmt: skip
    assert ("note",) not in columns and ("owner",) in columns  # PostgreSQL DDL is transactional


def test_a_version_1_database_opens_in_this_version_on_postgres(pg_url, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:1])
    Store(pg_url, tmp_path).close()
    sql(pg_url,  # a row as version 1 wrote it
        "INSERT INTO generation (id, created_at, status, request, prompt, search_text, model, images, timings,"
        " replay_of, favourite, tags, error) VALUES ('old-1', '2026-01-01 00:00:00+00', 'done', '{\"prompt\": "
        "\"An Old Red Circle\"}', 'An Old Red Circle', 'an old red circle', 'm', '[]', '{}', NULL, false, '[]', NULL)")  # fmt: skip
    monkeypatch.undo()
    with Store(pg_url, tmp_path) as new:
        assert new.get("old-1")["request"] == {"prompt": "An Old Red Circle"}
        assert new.get("old-1")["created_at"] == "2026-01-01T00:00:00+00:00"
        assert new.list(owner="someone")[1] == 0 and new.list(search="OLD RED")[1] == 1


def test_a_database_from_a_newer_studio_is_refused_on_postgres(pg_url, tmp_path) -> None:
    Store(pg_url, tmp_path).close()
    sql(pg_url, "INSERT INTO schema_migrations VALUES (99, 'later')")
    with pytest.raises(StudioError, match="update Flux Studio"):
        Store(pg_url, tmp_path)


# ---- what PostgreSQL does differently ------------------------------------------------------------------------
def test_a_failing_insert_leaves_no_image_files_on_postgres(store: Store, pg_url, tmp_path) -> None:
    sql(pg_url, "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$;"
                " CREATE TRIGGER refuse BEFORE INSERT ON generation FOR EACH ROW EXECUTE FUNCTION refuse()")  # fmt: skip
    with pytest.raises(Exception, match="refused"):
        add(store, n=3)
    assert image_files(tmp_path) == []
    assert store.list() == ([], 0)


def test_times_are_utc_whatever_the_server_time_zone(pg_url, tmp_path) -> None:
    with Store(with_settings(pg_url, TimeZone="Asia/Kolkata"), tmp_path) as store:
        record = add(store)
        assert record["created_at"].endswith("+00:00")
        assert store.get(record["id"]) == record and store.list()[0] == [record]


def test_nul_characters_find_nothing(store: Store) -> None:
    add(store, "a red circle")
    with pytest.raises(NotFound):
        store.get("20260101-000000-\x00")
    assert store.list(search="red\x00") == ([], 0)
    with pytest.raises(NotFound):
        store.resolve_share("\x00" * 32)


def test_a_plain_postgresql_url_uses_psycopg(pg_url, tmp_path) -> None:
    plain = sa.make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with Store(plain, tmp_path) as store:
        assert store.get(add(store)["id"])["status"] == "done"


def test_a_read_only_database_is_a_studio_error_naming_the_url(pg_url, tmp_path) -> None:
    Store(pg_url, tmp_path).close()
    with Store(with_settings(pg_url, default_transaction_read_only="on"), tmp_path) as store:
        assert store.list() == ([], 0)  # reading still works
        with pytest.raises(StudioError, match="read-only .*STUDIO_DB_URL"):
            add(store)
    assert image_files(tmp_path) == []


def test_login_and_database_mistakes_are_studio_errors(server: sa.Engine, tmp_path) -> None:
    url = server.url
    wrong = {
        "refused the login": url.set(password="not-the-password"),
        "does not exist": url.set(database="no_such_database"),
    }
    for message, bad in wrong.items():
        with pytest.raises(StudioError, match=f"{message}.*STUDIO_DB_URL") as caught:
            Store(bad.render_as_string(hide_password=False), tmp_path)
        assert "not-the-password" not in str(caught.value)


# ---- no server needed ----------------------------------------------------------------------------------------
def test_an_unreachable_server_is_a_studio_error_naming_studio_db_url(tmp_path) -> None:
    url = "postgresql+psycopg://studio:secret-pw@127.0.0.1:1/studio"  # nothing listens on port 1
    with pytest.raises(StudioError, match="cannot reach the database .*STUDIO_DB_URL") as caught:
        Store(url, tmp_path)
    assert "secret-pw" not in str(caught.value)


def test_an_unusable_url_is_a_studio_error(tmp_path) -> None:
    for url in ("not a url", "postgresql+nosuchdriver://u@127.0.0.1/db"):
        with pytest.raises(StudioError, match="STUDIO_DB_URL"):
            Store(url, tmp_path)
