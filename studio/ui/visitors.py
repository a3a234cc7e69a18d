"""Anonymous visitors in multi-user mode: a random, HttpOnly cookie names the owner of a browser's history."""

from __future__ import annotations

import re
import secrets
from typing import Any

COOKIE = "flux_studio_visitor"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32,64}$")


def new_token() -> str:
    """A fresh visitor id (192 bits)."""
    return secrets.token_urlsafe(24)


def valid(token: str | None) -> bool:
    """Whether a cookie value looks like one of our visitor ids."""
    return bool(token) and bool(_TOKEN.match(token or ""))


def visitor_token(request: Any) -> str | None:
    """The visitor id of a Gradio/Starlette request, or None."""
    if request is None:
        return None
    cookies = getattr(request, "cookies", None)
    if cookies is None and getattr(request, "request", None) is not None:
        cookies = request.request.cookies
    token = (cookies or {}).get(COOKIE)
    return token if valid(token) else None


def install(app: Any) -> None:
    """Middleware that gives every browser without a valid visitor cookie a new one."""

    @app.middleware("http")
    async def visitor_cookie(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        if not valid(request.cookies.get(COOKIE)):
            response.set_cookie(COOKIE, new_token(), max_age=400 * 24 * 3600, httponly=True, samesite="lax",
                                secure=request.url.scheme == "https")
        return response
