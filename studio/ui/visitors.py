"""Who owns a request's records in multi-user mode: the Hugging Face user, else the anonymous browser.

On a Space with OAuth (``hf_oauth: true`` in the README front matter, so ``SPACE_ID`` and ``OAUTH_CLIENT_ID`` are
set) a visitor logged in through Gradio's ``LoginButton`` owns their records as ``hf:<username>`` in every browser.
Otherwise a random, HttpOnly cookie names the owner of one browser's history.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
from base64 import b64decode
from collections.abc import Mapping
from typing import Any

COOKIE = "flux_studio_visitor"
SESSION_COOKIE = "session"  # Starlette's SessionMiddleware, which Gradio's OAuth installs
SESSION_MAX_AGE_S = 14 * 24 * 3600
HF_PREFIX = "hf:"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
_HF_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,59}$")


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


def oauth_enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether Hugging Face OAuth is on: a Space (``SPACE_ID``) with an OAuth app (``OAUTH_CLIENT_ID``)."""
    env = os.environ if env is None else env
    return bool(env.get("SPACE_ID") and env.get("OAUTH_CLIENT_ID"))


def _session_from_cookie(value: str, secret: str) -> dict[str, Any]:
    """The session Gradio's OAuth SessionMiddleware signed into its cookie ({} if forged, expired or absent)."""
    import itsdangerous

    signer = itsdangerous.TimestampSigner(hashlib.sha256((secret + "-v4").encode()).hexdigest())
    try:
        data = json.loads(b64decode(signer.unsign(value.encode(), max_age=SESSION_MAX_AGE_S)))
    except (itsdangerous.BadSignature, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _session(request: Any, env: Mapping[str, str]) -> Mapping[str, Any]:
    """The OAuth session of a Gradio or Starlette request: the middleware's, else decoded from the cookie."""
    raw = getattr(request, "request", None) or request
    scope = getattr(raw, "scope", None)
    if isinstance(scope, dict) and isinstance(scope.get("session"), Mapping):
        return scope["session"]
    cookies = getattr(raw, "cookies", None) or {}
    value = cookies.get(SESSION_COOKIE)
    return _session_from_cookie(value, env.get("OAUTH_CLIENT_SECRET", "")) if value else {}


def hf_username(request: Any, env: Mapping[str, str] | None = None) -> str | None:
    """The Hugging Face user logged in through OAuth on this request, or None (OAuth off, not logged in)."""
    env = os.environ if env is None else env
    if request is None or not oauth_enabled(env):
        return None
    info = _session(request, env).get("oauth_info") or {}
    expires = info.get("expires_at") if isinstance(info, Mapping) else None
    name = None
    if isinstance(info, Mapping) and not (isinstance(expires, (int, float)) and expires < time.time()):
        user = info.get("userinfo") or {}
        name = user.get("preferred_username") if isinstance(user, Mapping) else None
    name = name or getattr(request, "username", None)  # gr.Request, where Gradio resolved the login itself
    return name if isinstance(name, str) and _HF_NAME.match(name) else None


def owner(request: Any, env: Mapping[str, str] | None = None) -> str | None:
    """The owner of a request's records in multi-user mode: ``hf:<user>`` with OAuth, else the visitor cookie."""
    name = hf_username(request, env)
    return HF_PREFIX + name if name else visitor_token(request)
