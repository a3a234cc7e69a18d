"""Numbered schema migrations of the history database, applied in order at start-up in one transaction.

Append only: a migration, once released, never changes (each creates what it needs from frozen copies, not from
``studio.store.schema``). ``migrate`` records each applied version in ``schema_migrations``, refuses a database
newer than this code, takes the write lock up front (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL advisory lock), and
on SQLite copies the WAL into the database file after migrating.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from studio.core.errors import StudioError
from studio.store.query import counts, lora_names_text
from studio.store.records import iso, utc_now
from studio.store.schema import MAX_ID_CHARS


# each migration gets a Connection inside the start-up transaction
def _migration_1(conn: sa.Connection) -> None:
    """Create ``generation`` and ``share`` (a frozen copy of the version-1 schema)."""
    md, text, when = sa.MetaData(), sa.Text, sa.DateTime(timezone=True)
    sa.Table(
        "generation", md,
        sa.Column("id", sa.String(MAX_ID_CHARS), primary_key=True),
        sa.Column("created_at", when, nullable=False, index=True),
        sa.Column("status", sa.String(16), nullable=False),
        *(sa.Column(name, text, nullable=False)
          for name in ("request", "prompt", "search_text", "model", "images", "timings")),
        sa.Column("replay_of", sa.String(MAX_ID_CHARS)),
        sa.Column("favourite", sa.Boolean, nullable=False),
        sa.Column("tags", text, nullable=False),
        sa.Column("error", text),
    )  # fmt: skip
    sa.Table(
        "share", md,
        sa.Column("token", sa.String(64), primary_key=True),
        sa.Column("generation_id", sa.String(MAX_ID_CHARS), sa.ForeignKey("generation.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("created_at", when, nullable=False),
        sa.Column("revoked_at", when),
    )  # fmt: skip
    md.create_all(conn)


def _migration_2(conn: sa.Connection) -> None:
    """Add ``generation.owner``: the visitor a record belongs to in multi-user mode (NULL = single-user)."""
    conn.execute(sa.text("ALTER TABLE generation ADD COLUMN owner VARCHAR(64)"))
    conn.execute(sa.text("CREATE INDEX ix_generation_owner ON generation (owner)"))


def _migration_3(conn: sa.Connection) -> None:
    """Gallery filters: LoRA names and region/control counts as columns (filled from each request), covering
    indexes for pages and filters, and on SQLite an FTS5 trigram index of the prompts kept in step by triggers."""
    for column in (
        "lora_names TEXT NOT NULL DEFAULT ''",
        "n_regions INTEGER NOT NULL DEFAULT 0",
        "n_controls INTEGER NOT NULL DEFAULT 0",
    ):
        conn.execute(sa.text(f"ALTER TABLE generation ADD COLUMN {column}"))
    conn.execute(sa.text("CREATE INDEX ix_generation_created_at_id ON generation (created_at, id)"))  # pages
    # every filter column too: a filtered page or count reads this index, never the wide rows (request JSON)
    filters = "status, favourite, n_regions, n_controls, lora_names, tags"
    conn.execute(sa.text(f"CREATE INDEX ix_generation_filters ON generation (created_at, id, model, {filters})"))
    conn.execute(sa.text(f"CREATE INDEX ix_generation_model ON generation (model, created_at, id, {filters})"))
    update = sa.text(
        "UPDATE generation SET lora_names = :loras, n_regions = :regions, n_controls = :controls WHERE id = :id"
    )
    for gen_id, request_json in conn.execute(sa.text("SELECT id, request FROM generation")).all():
        request = json.loads(request_json)
        regions, controls = counts(request)
        conn.execute(
            update, {"id": gen_id, "loras": lora_names_text(request), "regions": regions, "controls": controls}
        )
    if conn.dialect.name == "sqlite" and _sqlite_has_trigram(conn):
        for statement in _FTS_SCHEMA:
            conn.execute(sa.text(statement))


_FTS_SCHEMA = (
    "CREATE VIRTUAL TABLE generation_fts USING fts5(id UNINDEXED, search_text, tokenize='trigram')",
    "CREATE TRIGGER generation_fts_insert AFTER INSERT ON generation BEGIN "
    "INSERT INTO generation_fts (id, search_text) VALUES (new.id, new.search_text); END",
    "CREATE TRIGGER generation_fts_delete AFTER DELETE ON generation BEGIN "
    "DELETE FROM generation_fts WHERE id = old.id; END",
    "CREATE TRIGGER generation_fts_update AFTER UPDATE OF search_text ON generation BEGIN "
    "UPDATE generation_fts SET search_text = new.search_text WHERE id = old.id; END",
    "INSERT INTO generation_fts (id, search_text) SELECT id, search_text FROM generation ORDER BY created_at, id",
)


def _sqlite_has_trigram(conn: sa.Connection) -> bool:
    """Whether this SQLite has FTS5 with the trigram tokenizer (3.34+); without it search stays a LIKE scan."""
    try:
        with conn.begin_nested():
            conn.execute(sa.text("CREATE VIRTUAL TABLE temp.fts_probe USING fts5(x, tokenize='trigram')"))
            conn.execute(sa.text("DROP TABLE temp.fts_probe"))
        return True
    except sa_exc.OperationalError:
        return False


_RAW_VISITOR = re.compile(r"^[A-Za-z0-9_-]{32,64}$")  # a visitor cookie as versions 2-3 stored it (frozen copy)


def _migration_4(conn: sa.Connection) -> None:
    """Owners that are raw visitor cookies become ``v:`` + 48 hex digits of their SHA-256 (``visitors.owner_key``,
    frozen here): the database no longer holds the secret, and each visitor keeps their history.
    ``hf:<user>`` and ``api`` owners stay as they are."""
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:  # zero the old values' bytes in the file, not only unlink them
        secure = conn.exec_driver_sql("PRAGMA secure_delete").scalar()
        conn.exec_driver_sql("PRAGMA secure_delete = ON")
    update = sa.text("UPDATE generation SET owner = :new WHERE owner = :old")
    for (owner,) in conn.execute(sa.text("SELECT DISTINCT owner FROM generation WHERE owner IS NOT NULL")).all():
        if _RAW_VISITOR.match(owner):
            conn.execute(update, {"old": owner, "new": "v:" + hashlib.sha256(owner.encode()).hexdigest()[:48]})
    if sqlite:
        conn.exec_driver_sql(f"PRAGMA secure_delete = {int(secure)}")


MIGRATIONS: tuple[Callable[[sa.Connection], None], ...] = (_migration_1, _migration_2, _migration_3, _migration_4)
_VERSIONS = sa.table("schema_migrations", sa.column("version"), sa.column("applied_at"))
_MIGRATION_LOCK = 0x466C7578_53747564  # "FluxStud": the PostgreSQL advisory lock held while migrating


def migrate(engine: sa.Engine) -> int:
    """Apply the migrations not yet recorded in ``schema_migrations``, in order, in one transaction."""
    with engine.execution_options(sqlite_begin="IMMEDIATE").begin() as conn:
        if conn.dialect.name == "postgresql":  # what BEGIN IMMEDIATE does on SQLite: one migrating process at a time
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        md = sa.MetaData()
        sa.Table(
            "schema_migrations",
            md,
            sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("applied_at", sa.String(40), nullable=False),
        )
        md.create_all(conn)
        done = set(conn.scalars(sa.select(_VERSIONS.c.version)))
        if done and max(done) > len(MIGRATIONS):
            raise StudioError(
                f"the history database has schema version {max(done)}, newer than this Flux Studio "
                f"({len(MIGRATIONS)}) — update Flux Studio or choose another STUDIO_DATA_DIR"
            )
        for version, migration in enumerate(MIGRATIONS, start=1):
            if version not in done:
                migration(conn)
                conn.execute(sa.insert(_VERSIONS).values(version=version, applied_at=iso(utc_now())))
    if engine.dialect.name == "sqlite" and len(done) < len(MIGRATIONS):
        _checkpoint(engine)
    return len(MIGRATIONS)


def _checkpoint(engine: sa.Engine) -> None:
    """Copy SQLite's WAL into the database file now, so pages a migration rewrote (old owners) are overwritten there."""
    raw = engine.raw_connection()
    try:
        raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    finally:
        raw.close()
