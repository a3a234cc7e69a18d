"""History tables: one row per generation (``generation``) and the public share tokens of a generation (``share``).

The tables as the code sees them now; the database gets them through ``studio.store.migrations``. JSON columns
(request, images, timings, tags) are text.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

STATUSES = ("done", "cancelled", "failed")
MAX_ID_CHARS = 64
MAX_OWNER_CHARS = 64
MAX_TOKEN_CHARS = 64


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
    owner: str | None = Field(default=None, max_length=MAX_OWNER_CHARS, index=True)
    lora_names: str = Field(default="", sa_type=sa.Text)
    n_regions: int = 0
    n_controls: int = 0


class Share(SQLModel, table=True):
    """A public share token of one generation; revoked tokens stay, marked by ``revoked_at``."""

    token: str = Field(primary_key=True, max_length=MAX_TOKEN_CHARS)
    generation_id: str = Field(foreign_key="generation.id", index=True, ondelete="CASCADE")
    created_at: datetime
    revoked_at: datetime | None = None
