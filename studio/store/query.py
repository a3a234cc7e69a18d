"""Gallery queries: the filters of ``Store.list`` as portable SQL conditions (SQLite and PostgreSQL).

``Filters`` is validated once; ``conditions`` turns it into SQLAlchemy WHERE clauses over the ``generation`` table.
Prompt search is a case-insensitive substring: on SQLite through an FTS5 trigram index (``generation_fts``, kept in
step by triggers) for needles of 3+ characters, elsewhere (PostgreSQL, short needles) through ``LIKE``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from studio.core.errors import InvalidRequest

SORTS = ("newest", "oldest")
MAX_SEARCH_CHARS = 4000
MAX_FILTER_CHARS = 200
FTS_TABLE = sa.table("generation_fts", sa.column("id"), sa.column("search_text"))


def escape_like(text: str) -> str:
    """``text`` with LIKE wildcards escaped (escape character ``\\``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def lora_names_text(request: dict[str, Any]) -> str:
    """The request's LoRA names, case-folded, one a line and framed by newlines (``""`` when none)."""
    names = [str(lo.get("name") or "").casefold() for lo in request.get("loras") or [] if isinstance(lo, dict)]
    names = [n.replace("\n", " ") for n in names if n]
    return "\n" + "\n".join(names) + "\n" if names else ""


def counts(request: dict[str, Any]) -> tuple[int, int]:
    """(number of regions, number of controls) of a request."""
    return len(request.get("regions") or []), len(request.get("controls") or [])


def parse_day(text: str, end: bool = False) -> datetime:
    """``YYYY-MM-DD`` (UTC) → the start of that day, or with ``end`` the start of the next day (exclusive bound)."""
    try:
        day = date.fromisoformat(text.strip())
    except (AttributeError, ValueError):
        raise InvalidRequest(
            f"date {str(text)[:40]!r} is not a day — write it as YYYY-MM-DD, e.g. 2025-01-31"
        ) from None
    moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return moment + timedelta(days=1) if end else moment


def _utc(moment: datetime | None, name: str) -> datetime | None:
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        raise InvalidRequest(f"{name} must be a date and time — write it as YYYY-MM-DD")
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _text(value: str | None, name: str, limit: int = MAX_FILTER_CHARS) -> str | None:
    """A stripped filter text (None when empty); NUL or overlong text is refused."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be text")
    value = value.strip()
    if len(value) > limit:
        raise InvalidRequest(f"the {name} filter is too long — use at most {limit} characters")
    return value or None


@dataclass(frozen=True)
class Filters:
    """What to list: every field None means "any"; ``until`` is exclusive; ``sort`` is newest or oldest first."""

    search: str | None = None
    owner: str | None = None
    status: str | None = None
    favourite: bool | None = None
    model: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    lora: str | None = None
    tag: str | None = None
    has_regions: bool | None = None
    has_controls: bool | None = None
    sort: str = "newest"

    def validated(self, statuses: tuple[str, ...]) -> Filters:
        """A normalised copy; InvalidRequest naming the fix for bad values."""
        if self.status is not None and self.status not in statuses:
            raise InvalidRequest(f"status {self.status!r} is unknown — use one of {', '.join(statuses)}")
        if self.sort not in SORTS:
            raise InvalidRequest(f"sort {self.sort!r} is unknown — use one of {', '.join(SORTS)}")
        since, until = _utc(self.since, "since"), _utc(self.until, "until")
        if since is not None and until is not None and until <= since:
            raise InvalidRequest("the date range is empty — the end date must not be before the start date")
        return Filters(
            search=_text(self.search, "search", MAX_SEARCH_CHARS), owner=self.owner, status=self.status,
            favourite=self.favourite, model=_text(self.model, "model"), since=since, until=until,
            lora=_text(self.lora, "LoRA"), tag=_text(self.tag, "tag"), has_regions=self.has_regions,
            has_controls=self.has_controls, sort=self.sort,
        )  # fmt: skip


def fts_phrase(needle: str) -> str:
    """An FTS5 query matching ``needle`` as one phrase (a substring, with the trigram tokenizer)."""
    return '"' + needle.replace('"', '""') + '"'


def search_condition(table: Any, search: str, fts: bool) -> sa.ColumnElement[bool]:
    """Prompts containing ``search`` (case-insensitive); FTS5 when available and the needle has 3+ characters."""
    needle = search.casefold()
    if "\x00" in needle:  # prompts never hold NUL (and PostgreSQL refuses it in text)
        return sa.false()
    if fts and len(needle) >= 3:
        matching = sa.select(FTS_TABLE.c.id).where(FTS_TABLE.c.search_text.op("MATCH")(fts_phrase(needle)))
        # "+id": probe the matches while walking a (covering) index, rather than look up every match's wide row
        return sa.literal_column("+generation.id").in_(matching)
    return table.search_text.like(f"%{escape_like(needle)}%", escape="\\")


def search_only(f: Filters, fts: bool) -> bool:
    """Whether ``f`` is just a prompt search the FTS index answers alone (no other filter)."""
    plain = Filters(search=f.search, sort=f.sort)
    return fts and f == plain and bool(f.search) and len(f.search.casefold()) >= 3 and "\x00" not in f.search


def fts_page(conn: Any, f: Filters, limit: int, offset: int) -> tuple[list[str], int]:
    """(ids of one page, total) of a search answered by the FTS index alone, in insertion (= creation) order.

    FTS5 walks its rowids in order and stops at the page, so neither the page nor the count reads a table row.
    """
    match = FTS_TABLE.c.search_text.op("MATCH")(fts_phrase(f.search.casefold()))  # type: ignore[union-attr]
    rowid = sa.literal_column("rowid")
    ids = sa.select(FTS_TABLE.c.id).where(match).order_by(rowid.asc() if f.sort == "oldest" else rowid.desc())
    total = conn.execute(sa.select(sa.func.count()).select_from(FTS_TABLE).where(match)).scalar_one()
    return list(conn.execute(ids.limit(limit).offset(offset)).scalars()), int(total)


def conditions(table: Any, f: Filters, fts: bool) -> list[sa.ColumnElement[bool]]:
    """WHERE clauses for validated filters ``f`` over ``table`` (the Generation model)."""
    if any("\x00" in (v or "") for v in (f.model, f.lora, f.tag, f.owner)):
        return [sa.false()]  # PostgreSQL refuses NUL in text; no stored value holds one
    where: list[sa.ColumnElement[bool]] = []
    if f.search:
        where.append(search_condition(table, f.search, fts))
    if f.owner is not None:
        where.append(table.owner == f.owner)
    if f.status is not None:
        where.append(table.status == f.status)
    if f.favourite is not None:
        where.append(table.favourite == bool(f.favourite))
    if f.model:
        where.append(table.model == f.model)
    if f.since is not None:
        where.append(table.created_at >= f.since)
    if f.until is not None:
        where.append(table.created_at < f.until)
    if f.lora:
        where.append(table.lora_names.like(f"%{escape_like(f.lora.casefold())}%", escape="\\"))
    if f.tag:  # tags are a JSON list: look for the quoted tag, case-insensitively
        needle = escape_like(json.dumps(f.tag).lower())
        where.append(sa.func.lower(table.tags).like(f"%{needle}%", escape="\\"))
    for column, wanted in ((table.n_regions, f.has_regions), (table.n_controls, f.has_controls)):
        if wanted is not None:
            where.append(column > 0 if wanted else column == 0)
    return where


def order_by(table: Any, sort: str) -> tuple[Any, Any]:
    """ORDER BY columns: creation time then id, newest or oldest first."""
    if sort == "oldest":
        return table.created_at.asc(), table.id.asc()
    return table.created_at.desc(), table.id.desc()
