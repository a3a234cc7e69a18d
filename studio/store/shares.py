"""Share tokens: a public, revocable link to one finished record (``/share/<token>``).

Each function works inside a caller's Session (the Store's transaction), so a token and its record change together.
A record has at most one active token; a revoked token stays in the table (``revoked_at``) and never resolves again.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from studio.core.errors import InvalidRequest, NotFound
from studio.store.records import utc_now
from studio.store.schema import Generation, Share

TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")


def active_token(session: Session, generation_id: str) -> str | None:
    """The oldest active token of the record, or None when it is not shared."""
    active = select(Share.token).where(col(Share.generation_id) == generation_id, col(Share.revoked_at).is_(None))
    return session.exec(active.order_by(col(Share.created_at))).first()


def share_token(session: Session, row: Generation) -> str:
    """The record's active token, or a new one; InvalidRequest for a record without images."""
    if row.status != "done" or row.images == "[]":
        raise InvalidRequest(f"generation {row.id} is {row.status} and has no image — share a finished one")
    existing = active_token(session, row.id)
    if existing is not None:
        return existing
    token = secrets.token_urlsafe(24)
    session.add(Share(token=token, generation_id=row.id, created_at=utc_now()))
    return token


def share_row(session: Session, token: Any) -> Share:
    """The active share ``token``; NotFound when it is malformed, unknown or revoked."""
    row = session.get(Share, token) if isinstance(token, str) and TOKEN.fullmatch(token) else None
    if row is None or row.revoked_at is not None:
        raise NotFound("this share link is unknown or was revoked — ask its owner for a new link")
    return row


def revoke(session: Session, token: str) -> None:
    """Revoke an active token; NotFound when unknown or already revoked."""
    share_row(session, token).revoked_at = utc_now()


def delete_shares(session: Session, generation_id: str) -> None:
    """Remove every token of the record (before the record itself)."""
    session.exec(sa.delete(Share).where(col(Share.generation_id) == generation_id))  # type: ignore[call-overload]
