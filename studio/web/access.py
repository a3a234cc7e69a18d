"""Owner-checked access to one stored record: the id syntax and the lookup every record route shares."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from fastapi.responses import Response

from studio.core.errors import NotFound, StudioError
from studio.web.share import error_page

if TYPE_CHECKING:
    from studio.store.records import Record

RECORD_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def owned_record(store: Any, record_id: str, owner: str | None, missing: str) -> Record | Response:
    """The visitor's record ``record_id``, or the error page to answer instead (404 ``missing``, 503 storage)."""
    if not RECORD_ID.fullmatch(record_id):
        return error_page(404, missing)
    try:
        return store.get(record_id, owner=owner)
    except NotFound:
        return error_page(404, missing)
    except StudioError as exc:
        return error_page(503, str(exc))
