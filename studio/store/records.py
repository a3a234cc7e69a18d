"""Record: one stored generation as a typed, frozen value, and its JSON shape (``to_dict``, docs/cli.md).

A record's ``request`` is the request exactly as stored (``GenerationRequest.to_dict()`` when it was generated), so
``GenerationRequest.from_dict(record.request)`` replays it. ``owner`` is kept on the Record for the code that checks
it but never appears in ``to_dict()``. Until every caller reads attributes, a Record also reads like its
``to_dict()`` (``record["id"]``, ``record.get("images")``, ``{**record}``).
"""

from __future__ import annotations

import copy
import json
import os
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from studio.core.request import GenerationRequest
    from studio.store.schema import Generation


def utc_now() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """``moment`` as ISO 8601 in UTC (a naive time is taken as UTC, as SQLite returns them)."""
    return (moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def new_id(moment: datetime) -> str:
    """A time-sortable, hard-to-guess record id, e.g. ``20250101-120000-1a2b3c4d``."""
    return f"{moment:%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class StoredImage:
    """One image file of a record: its absolute path, content hash and seed."""

    path: str
    sha256: str
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """``{"path", "sha256", "seed"}``."""
        return {"path": self.path, "sha256": self.sha256, "seed": self.seed}


@dataclass(frozen=True)
class Record(Mapping[str, Any]):
    """One generation as stored: ``done`` (with images), ``cancelled`` or ``failed`` (without)."""

    id: str
    created_at: datetime
    status: str
    request: dict[str, Any]  # the stored request (read-only by convention; ``to_dict`` hands out copies)
    images: tuple[StoredImage, ...] = ()
    timings: dict[str, Any] = field(default_factory=dict)
    replay_of: str | None = None
    favourite: bool = False
    tags: tuple[str, ...] = ()
    error: str | None = None
    owner: str | None = field(default=None, repr=False)  # multi-user mode: whose record (never in ``to_dict``)

    @classmethod
    def from_row(cls, row: Generation | Any, data_dir: str) -> Record:
        """The Record of a ``generation`` row (an ORM object or a plain row); image files under ``data_dir``."""
        files = json.loads(row.images)
        return cls(
            id=row.id,
            created_at=row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC),
            status=row.status,
            request=json.loads(row.request),
            images=stored_images(data_dir, files),
            timings=json.loads(row.timings),
            replay_of=row.replay_of,
            favourite=bool(row.favourite),
            tags=tuple(json.loads(row.tags)),
            error=row.error,
            owner=row.owner,
        )

    @property
    def has_images(self) -> bool:
        """Whether the record is ``done`` with at least one image."""
        return self.status == "done" and bool(self.images)

    def generation_request(self) -> GenerationRequest:
        """The stored request as a GenerationRequest (to replay it exactly)."""
        from studio.core.request import GenerationRequest

        return GenerationRequest.from_dict(copy.deepcopy(self.request))

    def to_dict(self) -> dict[str, Any]:
        """The JSON record of docs/cli.md: id, created_at (ISO), status, request, images, timings, replay_of,
        favourite, tags, error — fresh copies, safe to change."""
        return {
            "id": self.id,
            "created_at": iso(self.created_at),
            "status": self.status,
            "request": copy.deepcopy(self.request),
            "images": [image.to_dict() for image in self.images],
            "timings": copy.deepcopy(self.timings),
            "replay_of": self.replay_of,
            "favourite": self.favourite,
            "tags": list(self.tags),
            "error": self.error,
        }

    # ---- read like ``to_dict()``, for callers not yet reading attributes ----------------------------------
    @cached_property
    def _view(self) -> dict[str, Any]:
        return self.to_dict()

    def __getitem__(self, key: str) -> Any:
        return self._view[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._view)

    def __len__(self) -> int:
        return len(self._view)


def stored_images(data_dir: str, files: list[dict[str, Any]]) -> tuple[StoredImage, ...]:
    """The StoredImages of a row's ``images`` JSON (``file`` relative to ``data_dir``)."""
    return tuple(StoredImage(os.path.join(data_dir, f["file"]), f["sha256"], f["seed"]) for f in files)
