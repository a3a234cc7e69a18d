"""Store: the generation history — records and share tokens in SQL (SQLite by default, or PostgreSQL), PNGs on disk.

``Store(url, data_dir)`` opens the database (``studio.store.database``), applies the numbered migrations
(``studio.store.migrations``), and keeps files under ``data_dir``: ``images/<id>-<k>.png`` (generated, with
metadata) and ``assets/<sha256>.png`` (inputs). One Session per call, so a Store is shared by Gradio's worker
threads. A record is its PNGs first, then one row: a crash in between leaves only files without a row, which
``sweep_orphans`` removes. ``add`` and ``list`` take keyword arguments only; records come back as typed ``Record``s.
"""

from __future__ import annotations

import builtins
import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa
from PIL import Image
from sqlmodel import Session, col, func, select

from studio.core.errors import InvalidRequest, NotFound
from studio.core.request import GenerationRequest
from studio.store import pngmeta, shares
from studio.store.assets import AssetStore
from studio.store.database import Database, default_url, os_errors
from studio.store.migrations import migrate
from studio.store.query import Filters, conditions, counts, fts_page, lora_names_text, order_by, search_only
from studio.store.records import Record, new_id, utc_now
from studio.store.schema import MAX_ID_CHARS, STATUSES, Generation

__all__ = ["STATUSES", "Record", "Store", "default_url"]

MAX_LIMIT = 500
MAX_TAGS = 32
MAX_TAG_CHARS = 64
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")

log = logging.getLogger(__name__)


class Store:
    """Generation history and share tokens; files under ``data_dir``. Safe to share between threads."""

    def __init__(self, url: str, data_dir: Path, busy_timeout_s: float = 5.0) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.images_dir = self.data_dir / "images"
        self.assets = AssetStore(self.data_dir / "assets")
        self.db = Database(url, self.data_dir, busy_timeout_s)  # connects only on first use
        with os_errors(self.data_dir):
            self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            with self.db.errors():
                self.schema_version = migrate(self.db.engine)
                self.fts = self.db.has_fts()
        except BaseException:
            self.db.close()
            raise

    def close(self) -> None:
        """Close all pooled connections."""
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- records ------------------------------------------------------------------------------------
    def add(
        self,
        *,
        request: GenerationRequest | Mapping[str, Any],
        images: Sequence[Image.Image] = (),
        seeds: Sequence[int] = (),
        timings: Mapping[str, Any] | None = None,
        status: str = "done",
        error: str | None = None,
        replay_of: str | None = None,
        owner: str | None = None,
    ) -> Record:
        """Write the PNGs, then insert the row in one transaction; return the Record.

        ``owner`` (multi-user mode) is stored with the row but never shown in ``Record.to_dict()``.
        """
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
        if status != "done" and images:
            raise ValueError("a cancelled or failed record has no images")
        if len(images) != len(seeds):
            raise ValueError(f"{len(images)} images but {len(seeds)} seeds")
        data = request.to_dict() if isinstance(request, GenerationRequest) else dict(request)
        moment = utc_now()
        row = _new_row(new_id(moment), moment, status, data, dict(timings or {}), replay_of, error, owner)
        # PNGs carry only what is deterministic, so the same request gives the same bytes.
        png_meta = {"request": data, "status": status}
        files: list[dict[str, Any]] = []
        try:
            with os_errors(self.data_dir):
                if images:  # records without images (cancelled, failed) need no images folder
                    self.images_dir.mkdir(parents=True, exist_ok=True)
                for k, (image, seed) in enumerate(zip(images, seeds, strict=True)):
                    name = f"images/{row.id}-{k}.png"
                    files.append({"file": name, "sha256": "", "seed": int(seed)})
                    files[-1]["sha256"] = pngmeta.save_png(image, self.data_dir / name, png_meta, int(seed))
            row.images = json.dumps(files)
            record = self._record(row)
            with self.db.session(write=True) as session:
                session.add(row)
        except BaseException:
            self._remove_files(files)
            raise
        return record

    def get(self, gen_id: str, owner: str | None = None) -> Record:
        """The record ``gen_id`` (of ``owner``, when set); NotFound when there is none."""
        with self.db.session() as session:
            return self._record(self._row(session, gen_id, owner))

    def list(
        self,
        *,
        search: str | None = None,
        limit: int = 50,
        offset: int = 0,
        owner: str | None = None,
        status: str | None = None,
        favourite: bool | None = None,
        **filters: Any,
    ) -> tuple[builtins.list[Record], int]:
        """(records newest first, total matching); ``search`` is a case-insensitive substring of the prompts.

        More ``filters`` (``studio.store.query.Filters``): ``model``, ``since``/``until`` (datetimes, until
        exclusive), ``lora`` (part of a LoRA name), ``tag``, ``has_regions``, ``has_controls``, ``sort``.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise InvalidRequest(f"limit must be from 1 to {MAX_LIMIT} (got {limit!r}) — try 50")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidRequest(f"offset must be a whole number ≥ 0 (got {offset!r}) — try 0")
        try:
            wanted = Filters(search=search, owner=owner, status=status, favourite=favourite, **filters)
        except TypeError as exc:
            raise InvalidRequest(f"unknown history filter ({exc}) — see studio.store.query.Filters") from None
        wanted = wanted.validated(STATUSES)
        ordered = order_by(Generation, wanted.sort)
        with self.db.session() as session:
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

    def models(self, *, owner: str | None = None, limit: int = 100) -> builtins.list[str]:
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
        with self.db.session() as session:
            return [m for m in session.connection().execute(statement).scalars().all() if m]

    def delete(self, gen_id: str, owner: str | None = None) -> None:
        """Remove the record, its share tokens and its image files."""
        with self.db.session(write=True) as session:
            row = self._row(session, gen_id, owner)
            files = json.loads(row.images)
            shares.delete_shares(session, row.id)
            session.delete(row)
        self._remove_files(files)

    def set_favourite(self, gen_id: str, favourite: bool, owner: str | None = None) -> Record:
        """Mark or unmark the record as a favourite; return it."""
        with self.db.session(write=True) as session:
            row = self._row(session, gen_id, owner)
            row.favourite = bool(favourite)
            session.flush()
            return self._record(row)

    def set_tags(self, gen_id: str, tags: builtins.list[str], owner: str | None = None) -> Record:
        """Replace the record's tags (trimmed, de-duplicated); return it."""
        cleaned = clean_tags(tags)
        with self.db.session(write=True) as session:
            row = self._row(session, gen_id, owner)
            row.tags = json.dumps(cleaned)
            session.flush()
            return self._record(row)

    def sweep_orphans(self, min_age_s: float = 60.0) -> builtins.list[Path]:
        """Remove image files (and stale temp files) older than ``min_age_s`` that no record owns."""
        if not self.images_dir.is_dir():
            return []
        with self.db.session() as session:
            owned = {im["file"] for images in session.exec(select(Generation.images)) for im in json.loads(images)}
        cutoff = time.time() - min_age_s
        removed = []
        candidates = [
            *self.images_dir.iterdir(),
            *(self.assets.root.glob(".tmp-*") if self.assets.root.is_dir() else []),
        ]
        for path in candidates:
            if f"images/{path.name}" in owned or not path.is_file() or path.stat().st_mtime > cutoff:
                continue
            path.unlink(missing_ok=True)
            removed.append(path)
        return removed

    # ---- shares (``studio.store.shares``) ---------------------------------------------------------------
    def share(self, gen_id: str, owner: str | None = None) -> str:
        """A public token for the record (its active one if it has one)."""
        with self.db.session(write=True) as session:
            return shares.share_token(session, self._row(session, gen_id, owner))

    def active_share(self, gen_id: str, owner: str | None = None) -> str | None:
        """The record's active share token, or None when it is not shared."""
        with self.db.session() as session:
            return shares.active_token(session, self._row(session, gen_id, owner).id)

    def unshare(self, token: str) -> None:
        """Revoke a share token; NotFound when unknown or already revoked."""
        with self.db.session(write=True) as session:
            shares.revoke(session, token)

    def resolve_share(self, token: str) -> Record:
        """The record behind an active share token; NotFound otherwise."""
        with self.db.session() as session:
            share = shares.share_row(session, token)
            return self._record(self._row(session, share.generation_id))

    # ---- plumbing -----------------------------------------------------------------------------------
    def _record(self, row: Generation | sa.Row[Any]) -> Record:
        return Record.from_row(row, str(self.data_dir))

    def _row(self, session: Session, gen_id: Any, owner: str | None = None) -> Generation:
        """The row ``gen_id``; with ``owner`` set, only that owner's rows exist (others are NotFound)."""
        usable = isinstance(gen_id, str) and len(gen_id) <= MAX_ID_CHARS and "\x00" not in gen_id  # PG: no NUL
        row = session.get(Generation, gen_id) if usable else None
        if row is not None and owner is not None and row.owner != owner:
            row = None
        if row is None:
            raise NotFound(f"no generation with id {str(gen_id)[:80]!r} — list them with `python -m studio history`")
        return row

    def _remove_files(self, files: builtins.list[dict[str, Any]]) -> None:
        """Best-effort clean-up after a failed save: an unremovable file (read-only disk) must not hide the cause."""
        for image in files:
            try:
                (self.data_dir / image["file"]).unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not remove %s after a failed save: %s", image["file"], exc)


def _new_row(
    gen_id: str,
    moment: Any,
    status: str,
    request: dict[str, Any],
    timings: dict[str, Any],
    replay_of: str | None,
    error: str | None,
    owner: str | None,
) -> Generation:
    """The ``generation`` row of a new record (its ``images`` are filled in once the PNGs are written)."""
    regions, controls = counts(request)
    return Generation(
        id=gen_id, created_at=moment, status=status, request=json.dumps(request),
        prompt=str(request.get("prompt") or ""), search_text=search_text(request),
        model=str(request.get("model") or ""), lora_names=lora_names_text(request), n_regions=regions,
        n_controls=controls, timings=json.dumps(timings), replay_of=replay_of, error=error, owner=owner,
    )  # fmt: skip


def search_text(request: Mapping[str, Any]) -> str:
    """What a prompt search looks in: the prompts of ``request``, case-folded, one a line."""
    parts = (request.get(k) for k in ("prompt", "prompt_2", "negative_prompt"))
    return "\n".join(p for p in parts if isinstance(p, str) and p).casefold()


def clean_tags(tags: Any) -> list[str]:
    """Tags trimmed and de-duplicated; InvalidRequest naming the limit for too many, too long or odd ones."""
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
