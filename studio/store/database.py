"""The history database's connection: engine set-up, sessions, and driver errors in words that name the fix.

SQLite runs in WAL mode with foreign keys and a busy timeout, and write transactions take the write lock up front
(``BEGIN IMMEDIATE``); a PostgreSQL URL gets psycopg 3, connections checked before use and a connect timeout.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import StaticPool
from sqlmodel import Session

from studio.core.errors import StudioError


def default_url(data_dir: Path) -> str:
    """``sqlite:///<data_dir>/studio.db`` (the default of STUDIO_DB_URL)."""
    return f"sqlite:///{(Path(data_dir) / 'studio.db').absolute()}"


def make_engine(url: str | sa.URL, busy_timeout_s: float) -> sa.Engine:
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


class Database:
    """One database URL: a reading engine, a writing one (``BEGIN IMMEDIATE``), and sessions whose driver errors a
    user can fix become StudioError. Connects only on first use; safe to share between threads."""

    def __init__(self, url: str, data_dir: Path, busy_timeout_s: float = 5.0) -> None:
        self.data_dir = data_dir
        try:
            parsed = sa.make_url(url)
            self.engine = make_engine(parsed, busy_timeout_s)
        except (sa_exc.ArgumentError, ImportError) as exc:  # NoSuchModuleError is an ArgumentError
            raise StudioError(
                f"STUDIO_DB_URL is not a database URL Flux Studio can use ({exc}) — use e.g. "
                "sqlite:///path/studio.db or postgresql://user:password@host:5432/dbname"
            ) from exc
        self.where = parsed.render_as_string(hide_password=True)
        self._problems = _SQLITE_PROBLEMS if parsed.get_backend_name() == "sqlite" else _SERVER_PROBLEMS
        self.write_engine = self.engine.execution_options(sqlite_begin="IMMEDIATE")

    def has_fts(self) -> bool:
        """Whether the database has the SQLite FTS5 prompt index (``generation_fts``)."""
        if self.engine.dialect.name != "sqlite":
            return False
        with self.engine.connect() as conn:
            found = conn.execute(sa.text("SELECT 1 FROM sqlite_master WHERE name = 'generation_fts'")).first()
            conn.rollback()
        return found is not None

    def close(self) -> None:
        """Close all pooled connections."""
        self.engine.dispose()

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Database failures a user can fix (locked, read-only, full, unreachable, ...) become StudioError."""
        try:
            yield
        except sa_exc.DatabaseError as exc:
            text = str(exc.orig or exc).lower()
            for pattern, message in self._problems:
                if re.search(pattern, text):
                    raise StudioError(message.format(data_dir=self.data_dir, db=self.where)) from exc
            raise

    @contextmanager
    def session(self, write: bool = False) -> Iterator[Session]:
        """A Session; with ``write``, inside one transaction that holds the write lock from its start."""
        with self.errors(), Session(self.write_engine if write else self.engine) as session:
            if write:
                with session.begin():
                    yield session
            else:
                yield session


@contextmanager
def os_errors(data_dir: Path) -> Iterator[None]:
    """A read-only or full data folder becomes StudioError."""
    try:
        yield
    except OSError as exc:
        for codes, message in _OS_PROBLEMS:
            if exc.errno in codes:
                raise StudioError(message.format(data_dir=data_dir)) from exc
        raise
