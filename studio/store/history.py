"""History: generation records and share tokens in SQL (SQLite by default, or PostgreSQL), PNGs on disk.

``Store(url, data_dir)`` opens the database, applies numbered migrations, and keeps files under ``data_dir``:
``images/<id>-<k>.png`` (generated, with metadata) and ``assets/<sha256>.png`` (inputs). One Session per call, so
a Store is shared by Gradio's worker threads. SQLite runs in WAL mode with foreign keys and a busy timeout; write
transactions take the write lock up front (``BEGIN IMMEDIATE``); on PostgreSQL an advisory lock serializes migrations
and pooled connections are checked before use. A record is its PNGs first, then one row: a crash in between leaves
only files without a row, which ``sweep_orphans`` removes.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa
from PIL import Image
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import StaticPool
from sqlmodel import Field, Session, SQLModel, col, func, select

from studio.core.errors import InvalidRequest, NotFound, StudioError
from studio.store import pngmeta
from studio.store.assets import AssetStore
from studio.store.query import Filters, conditions, counts, fts_page, lora_names_text, order_by, search_only

STATUSES = ("done", "cancelled", "failed")
MAX_LIMIT = 500
MAX_TAGS = 32
MAX_TAG_CHARS = 64
MAX_ID_CHARS = 64
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")

log = logging.getLogger(__name__)


class Generation(SQLModel, table=True):
    """One generation: its request, outcome and image files (JSON columns are text)."""

    id: str = Field(primary_key=True, max_length=MAX_ID_CHARS)
    created_at: datetime = Field(index=True)
    status: str
    request: str = Field(sa_type=sa.Text)
    prompt: str = Field(sa_type=sa.Text)
    search_text: str = Field(sa_type=sa.Text)
    model: str = Field(sa_type=sa.Text)
    images: str = Field(default="[]", sa_type=sa.Text)
    timings: str = Field(default="{}", sa_type=sa.Text)
    replay_of: str | None = Field(default=None, max_length=MAX_ID_CHARS)
    favourite: bool = False
    tags: str = Field(default="[]", sa_type=sa.Text)
    error: str | None = Field(default=None, sa_type=sa.Text)
    owner: str | None = Field(default=None, max_length=64, index=True)
    lora_names: str = Field(default="", sa_type=sa.Text)
    n_regions: int = 0
    n_controls: int = 0


class Share(SQLModel, table=True):
    """A public share token of one generation; revoked tokens stay, marked by ``revoked_at``."""

    token: str = Field(primary_key=True, max_length=64)
    generation_id: str = Field(foreign_key="generation.id", index=True, ondelete="CASCADE")
    created_at: datetime
    revoked_at: datetime | None = None


# ---- migrations: append only; each gets a Connection inside the start-up transaction ------------------
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


def _migrate(engine: sa.Engine) -> int:
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
                conn.execute(sa.insert(_VERSIONS).values(version=version, applied_at=_iso(_now())))
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


# ---- engine -----------------------------------------------------------------------------------------
def default_url(data_dir: Path) -> str:
    """``sqlite:///<data_dir>/studio.db`` (the default of STUDIO_DB_URL)."""
    return f"sqlite:///{(Path(data_dir) / 'studio.db').absolute()}"


def _make_engine(url: str | sa.URL, busy_timeout_s: float) -> sa.Engine:
    """An engine; for SQLite with WAL, foreign keys, busy timeout and explicit BEGIN [IMMEDIATE]; for a server
    (PostgreSQL: plain ``postgresql://`` uses psycopg 3) with connections checked before use and a connect timeout."""
    parsed = sa.make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")  # the driver in requirements.txt
    if parsed.get_backend_name() != "sqlite":
        psycopg = parsed.get_driver_name() == "psycopg" and "connect_timeout" not in parsed.query
        return sa.create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 10} if psycopg else {})
    memory = parsed.database in (None, "", ":memory:")
    engine = sa.create_engine(
        parsed,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_s},
        poolclass=StaticPool if memory else None,
    )
    busy_ms = int(busy_timeout_s * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return (moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def new_id(moment: datetime) -> str:
    """A time-sortable, hard-to-guess record id, e.g. ``20250101-120000-1a2b3c4d``."""
    return f"{moment:%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"


def _search_text(request: dict[str, Any]) -> str:
    parts = (request.get(k) for k in ("prompt", "prompt_2", "negative_prompt"))
    return "\n".join(p for p in parts if isinstance(p, str) and p).casefold()


def _clean_tags(tags: Any) -> list[str]:
    if not isinstance(tags, (list, tuple)) or not all(isinstance(t, str) for t in tags):
        raise InvalidRequest("tags must be a list of words, e.g. ['portrait', 'best']")
    cleaned = list(dict.fromkeys(t.strip() for t in tags if t.strip()))
    if len(cleaned) > MAX_TAGS:
        raise InvalidRequest(f"{len(cleaned)} tags given — use at most {MAX_TAGS}")
    for tag in cleaned:
        if len(tag) > MAX_TAG_CHARS or _CONTROL_CHARS.search(tag):
            raise InvalidRequest(
                f"tag {tag[:20]!r}… is too long or has control characters — use ≤ {MAX_TAG_CHARS} plain characters"
            )
    return cleaned


_READ_ONLY = "the data folder {data_dir} is read-only — choose a writable STUDIO_DATA_DIR"
_FULL = "the disk holding {data_dir} is full — free some space or choose another STUDIO_DATA_DIR"
# (regular expression on the lower-cased driver message, what to tell the user); the first match wins
_SQLITE_PROBLEMS = (
    (r"locked|busy", "the history database {db} is busy (another Flux Studio or program) — try again or stop it"),
    (r"readonly|read-only", _READ_ONLY),
    (r"disk is full|disk full|no space", _FULL),
    (r"unable to open database", "cannot open the database {db} — use a writable STUDIO_DATA_DIR or STUDIO_DB_URL"),
    (r"not a database|malformed", "{db} is not a valid history database — move it away or use another STUDIO_DATA_DIR"),
)
_SERVER_PROBLEMS = (  # PostgreSQL (psycopg's wording); for a database server, STUDIO_DB_URL is what to fix
    (
        r"password authentication failed|no pg_hba\.conf entry|role \".*\" does not exist",
        "the database {db} refused the login — fix the user name or password in STUDIO_DB_URL",
    ),
    (r"database \".*\" does not exist", "the database {db} does not exist — create it or fix STUDIO_DB_URL"),
    (
        r"too many clients|connection slots are reserved|lock timeout|deadlock detected|could not serialize",
        "the history database {db} is busy (too many connections or a long lock) — try again later",
    ),
    (
        r"connection refused|could not connect|connection failed|resolve host|translate host name|timeout expired"
        r"|server closed the connection|terminating connection|connection is (?:closed|lost)|ssl syscall",
        "cannot reach the database {db} — start it or fix STUDIO_DB_URL",
    ),
    (
        r"read-only transaction",
        "the database {db} is read-only (a standby server or a read-only user) — point STUDIO_DB_URL at a writable one",
    ),
    (r"permission denied", "the user in {db} may not use the history tables — grant it rights or fix STUDIO_DB_URL"),
    (r"no space left|disk full|could not extend file", "the server of the database {db} is out of disk space"),
)
_OS_PROBLEMS = (((errno.EROFS, errno.EACCES, errno.EPERM), _READ_ONLY), ((errno.ENOSPC, errno.EDQUOT), _FULL))


class Store:
    """Generation history and share tokens; files under ``data_dir``. Safe to share between threads."""

    def __init__(self, url: str, data_dir: Path, busy_timeout_s: float = 5.0) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.images_dir = self.data_dir / "images"
        self.assets = AssetStore(self.data_dir / "assets")
        try:
            parsed = sa.make_url(url)
            self._engine = _make_engine(parsed, busy_timeout_s)  # connects only on first use
        except (sa_exc.ArgumentError, ImportError) as exc:  # NoSuchModuleError is an ArgumentError
            raise StudioError(
                f"STUDIO_DB_URL is not a database URL Flux Studio can use ({exc}) — use e.g. "
                "sqlite:///path/studio.db or postgresql://user:password@host:5432/dbname"
            ) from exc
        self._where = parsed.render_as_string(hide_password=True)
        self._problems = _SQLITE_PROBLEMS if parsed.get_backend_name() == "sqlite" else _SERVER_PROBLEMS
        with self._os_errors():
            self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_engine = self._engine.execution_options(sqlite_begin="IMMEDIATE")
        try:
            with self._db_errors():
                self.schema_version = _migrate(self._engine)
                self.fts = self._has_fts()
        except BaseException:
            self._engine.dispose()
            raise

    # ---- plumbing -----------------------------------------------------------------------------------
    def _has_fts(self) -> bool:
        """Whether the database has the SQLite FTS5 prompt index (``generation_fts``)."""
        if self._engine.dialect.name != "sqlite":
            return False
        with self._engine.connect() as conn:
            found = conn.execute(sa.text("SELECT 1 FROM sqlite_master WHERE name = 'generation_fts'")).first()
            conn.rollback()
        return found is not None

    def close(self) -> None:
        """Close all pooled connections."""
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextmanager
    def _db_errors(self) -> Iterator[None]:
        """Database failures a user can fix (locked, read-only, full, ...) become StudioError."""
        try:
            yield
        except sa_exc.DatabaseError as exc:
            text = str(exc.orig or exc).lower()
            for pattern, message in self._problems:
                if re.search(pattern, text):
                    raise StudioError(message.format(data_dir=self.data_dir, db=self._where)) from exc
            raise

    @contextmanager
    def _os_errors(self) -> Iterator[None]:
        """A read-only or full data folder becomes StudioError."""
        try:
            yield
        except OSError as exc:
            for codes, message in _OS_PROBLEMS:
                if exc.errno in codes:
                    raise StudioError(message.format(data_dir=self.data_dir)) from exc
            raise

    @contextmanager
    def _session(self, write: bool = False) -> Iterator[Session]:
        with self._db_errors(), Session(self._write_engine if write else self._engine) as session:
            if write:
                with session.begin():
                    yield session
            else:
                yield session

    def _record(self, row: Generation | sa.Row[Any]) -> dict[str, Any]:
        return {
            "id": row.id,
            "created_at": _iso(row.created_at),
            "status": row.status,
            "request": json.loads(row.request),
            "images": self._images(json.loads(row.images)),
            "timings": json.loads(row.timings),
            "replay_of": row.replay_of,
            "favourite": bool(row.favourite),
            "tags": json.loads(row.tags),
            "error": row.error,
        }

    def _images(self, files: list[dict[str, Any]]) -> list[dict[str, Any]]:
        root = str(self.data_dir)  # os.path.join: pages of records build many paths
        return [{"path": os.path.join(root, f["file"]), "sha256": f["sha256"], "seed": f["seed"]} for f in files]

    def _row(self, session: Session, gen_id: Any, owner: str | None = None) -> Generation:
        """The row ``gen_id``; with ``owner`` set, only that owner's rows exist (others are NotFound)."""
        usable = isinstance(gen_id, str) and len(gen_id) <= MAX_ID_CHARS and "\x00" not in gen_id  # PG: no NUL
        row = session.get(Generation, gen_id) if usable else None
        if row is not None and owner is not None and row.owner != owner:
            row = None
        if row is None:
            raise NotFound(f"no generation with id {str(gen_id)[:80]!r} — list them with `python -m studio history`")
        return row

    def _remove_files(self, files: list[dict[str, Any]]) -> None:
        """Best-effort clean-up after a failed save: an unremovable file (read-only disk) must not hide the cause."""
        for image in files:
            try:
                (self.data_dir / image["file"]).unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not remove %s after a failed save: %s", image["file"], exc)

    # ---- records ------------------------------------------------------------------------------------
    def add(
        self,
        request: dict[str, Any],
        images: list[Image.Image],
        seeds: list[int],
        timings: dict[str, Any],
        status: str = "done",
        error: str | None = None,
        replay_of: str | None = None,
        owner: str | None = None,
    ) -> dict[str, Any]:
        """Write the PNGs, then insert the row in one transaction; return the record (docs/cli.md).

        ``owner`` (multi-user mode) is stored with the row but never shown in records.
        """
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
        if status != "done" and images:
            raise ValueError("a cancelled or failed record has no images")
        if len(images) != len(seeds):
            raise ValueError(f"{len(images)} images but {len(seeds)} seeds")
        moment = _now()
        meta: dict[str, Any] = {
            "id": new_id(moment),
            "created_at": _iso(moment),
            "status": status,
            "request": request,
            "timings": timings,
            "replay_of": replay_of,
            "favourite": False,
            "tags": [],
            "error": error,
        }
        row = Generation(
            id=meta["id"],
            created_at=moment,
            status=status,
            request=json.dumps(request),
            prompt=str(request.get("prompt") or ""),
            search_text=_search_text(request),
            model=str(request.get("model") or ""),
            lora_names=lora_names_text(request),
            n_regions=counts(request)[0],
            n_controls=counts(request)[1],
            timings=json.dumps(timings),
            replay_of=replay_of,
            error=error,
            owner=owner,
        )
        # PNGs carry only what is deterministic, so the same request gives the same bytes.
        png_meta = {"request": request, "status": status}
        files: list[dict[str, Any]] = []
        try:
            with self._os_errors():
                if images:  # records without images (cancelled, failed) need no images folder
                    self.images_dir.mkdir(parents=True, exist_ok=True)
                for k, (image, seed) in enumerate(zip(images, seeds, strict=True)):
                    name = f"images/{meta['id']}-{k}.png"
                    files.append({"file": name, "sha256": "", "seed": int(seed)})
                    files[-1]["sha256"] = pngmeta.save_png(image, self.data_dir / name, png_meta, int(seed))
            row.images = json.dumps(files)
            with self._session(write=True) as session:
                session.add(row)
        except BaseException:
            self._remove_files(files)
            raise
        head = {k: meta.pop(k) for k in ("id", "created_at", "status", "request")}
        return {**head, "images": self._images(files), **meta}

    def get(self, gen_id: str, owner: str | None = None) -> dict[str, Any]:
        """The record ``gen_id``; NotFound when there is none."""
        with self._session() as session:
            return self._record(self._row(session, gen_id, owner))

    def list(
        self,
        search: str | None = None,
        limit: int = 50,
        offset: int = 0,
        owner: str | None = None,
        status: str | None = None,
        favourite: bool | None = None,
        **filters: Any,
    ) -> tuple[builtins.list[dict[str, Any]], int]:
        """(records newest first, total matching); ``search`` is a case-insensitive substring of the prompts.

        More ``filters`` (``history_query.Filters``): ``model``, ``since``/``until`` (datetimes, until exclusive),
        ``lora`` (part of a LoRA name), ``tag``, ``has_regions``, ``has_controls``, ``sort`` (newest/oldest).
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise InvalidRequest(f"limit must be from 1 to {MAX_LIMIT} (got {limit!r}) — try 50")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidRequest(f"offset must be a whole number ≥ 0 (got {offset!r}) — try 0")
        try:
            wanted = Filters(search=search, owner=owner, status=status, favourite=favourite, **filters)
        except TypeError as exc:
            raise InvalidRequest(f"unknown history filter ({exc}) — see history_query.Filters") from None
        wanted = wanted.validated(STATUSES)
        ordered = order_by(Generation, wanted.sort)
        with self._session() as session:
            table = Generation.__table__  # plain rows (Core), not ORM objects: a page is read-only
            if search_only(wanted, self.fts):
                page_ids, total = fts_page(session.connection(), wanted, limit, offset)
                query = sa.select(table).where(col(Generation.id).in_(page_ids)).order_by(*ordered)
            else:
                where = conditions(Generation, wanted, self.fts)
                # the page's ids first (a covering index), then just those rows: deep pages read no skipped row
                page = select(Generation.id).where(*where).order_by(*ordered).offset(offset).limit(limit).subquery()
                query = sa.select(table).join(page, col(Generation.id) == page.c.id).order_by(*ordered)
                total = session.exec(select(func.count()).select_from(Generation).where(*where)).one()
            rows = session.connection().execute(query).all()
        return [self._record(row) for row in rows], int(total)

    def models(self, owner: str | None = None, limit: int = 100) -> builtins.list[str]:
        """The distinct model names in the history (of ``owner``, when set), sorted."""
        if owner is not None:  # one visitor's records: few
            query = select(Generation.model).where(col(Generation.owner) == owner).distinct()
            statement: Any = query.order_by(col(Generation.model)).limit(limit)
        else:  # hop from model to model along ix_generation_model instead of reading every row
            statement = sa.text(
                "WITH RECURSIVE m(model) AS (SELECT min(model) FROM generation UNION ALL "
                "SELECT (SELECT min(g.model) FROM generation g WHERE g.model > m.model) FROM m "
                "WHERE m.model IS NOT NULL) SELECT model FROM m WHERE model IS NOT NULL LIMIT :limit"
            ).bindparams(limit=limit)
        with self._session() as session:
            return [m for m in session.connection().execute(statement).scalars().all() if m]

    def delete(self, gen_id: str, owner: str | None = None) -> None:
        """Remove the record, its share tokens and its image files."""
        with self._session(write=True) as session:
            row = self._row(session, gen_id, owner)
            files = json.loads(row.images)
            session.exec(sa.delete(Share).where(col(Share.generation_id) == row.id))
            session.delete(row)
        self._remove_files(files)

    def set_favourite(self, gen_id: str, favourite: bool, owner: str | None = None) -> dict[str, Any]:
        """Mark or unmark the record as a favourite; return it."""
        with self._session(write=True) as session:
            row = self._row(session, gen_id, owner)
            row.favourite = bool(favourite)
            session.flush()
            return self._record(row)

    def set_tags(self, gen_id: str, tags: builtins.list[str], owner: str | None = None) -> dict[str, Any]:
        """Replace the record's tags (trimmed, de-duplicated); return it."""
        cleaned = _clean_tags(tags)
        with self._session(write=True) as session:
            row = self._row(session, gen_id, owner)
            row.tags = json.dumps(cleaned)
            session.flush()
            return self._record(row)

    def sweep_orphans(self, min_age_s: float = 60.0) -> builtins.list[Path]:
        """Remove image files (and stale temp files) older than ``min_age_s`` that no record owns."""
        if not self.images_dir.is_dir():
            return []
        with self._session() as session:
            owned = {im["file"] for images in session.exec(select(Generation.images)) for im in json.loads(images)}
        cutoff = time.time() - min_age_s
        removed = []
        candidates = [
            *self.images_dir.iterdir(),
            *(self.assets.root.glob(".tmp-*") if self.assets.root.is_dir() else []),
        ]
        for path in candidates:
            owner = f"images/{path.name}"
            if owner in owned or not path.is_file() or path.stat().st_mtime > cutoff:
                continue
            path.unlink(missing_ok=True)
            removed.append(path)
        return removed

    # ---- shares -------------------------------------------------------------------------------------
    def share(self, gen_id: str, owner: str | None = None) -> str:
        """A public token for the record (its active one if it has one)."""
        with self._session(write=True) as session:
            row = self._row(session, gen_id, owner)
            if row.status != "done" or row.images == "[]":
                raise InvalidRequest(f"generation {row.id} is {row.status} and has no image — share a finished one")
            active = select(Share).where(col(Share.generation_id) == row.id, col(Share.revoked_at).is_(None))
            existing = session.exec(active.order_by(col(Share.created_at))).first()
            if existing is not None:
                return existing.token
            token = secrets.token_urlsafe(24)
            session.add(Share(token=token, generation_id=row.id, created_at=_now()))
            return token

    def active_share(self, gen_id: str, owner: str | None = None) -> str | None:
        """The record's active share token, or None when it is not shared."""
        with self._session() as session:
            row = self._row(session, gen_id, owner)
            active = select(Share.token).where(col(Share.generation_id) == row.id, col(Share.revoked_at).is_(None))
            return session.exec(active.order_by(col(Share.created_at))).first()

    def _share_row(self, session: Session, token: Any) -> Share:
        row = session.get(Share, token) if isinstance(token, str) and _TOKEN.fullmatch(token) else None
        if row is None or row.revoked_at is not None:
            raise NotFound("this share link is unknown or was revoked — ask its owner for a new link")
        return row

    def unshare(self, token: str) -> None:
        """Revoke a share token; NotFound when unknown or already revoked."""
        with self._session(write=True) as session:
            self._share_row(session, token).revoked_at = _now()

    def resolve_share(self, token: str) -> dict[str, Any]:
        """The record behind an active share token; NotFound otherwise."""
        with self._session() as session:
            share = self._share_row(session, token)
            return self._record(self._row(session, share.generation_id))
