"""Who owns a request's records in multi-user mode: the Hugging Face user, else the anonymous browser.

On a Space with OAuth (``hf_oauth: true`` in the README front matter, so ``SPACE_ID`` and ``OAUTH_CLIENT_ID`` are
set) a visitor logged in through Gradio's ``LoginButton`` owns their records as ``hf:<username>`` in every browser.
Otherwise a random, HttpOnly cookie names the owner of one browser's history.

Owner keys (the ``generation.owner`` column): ``hf:<username>`` for a logged-in Hugging Face user (a public name),
``v:<hash>`` for a visitor cookie and ``k:<hash>`` for an API client's ``Authorization: Bearer`` token, where
``<hash>`` is the first 48 hex digits of the token's SHA-256. The secret itself is never stored or logged: whoever
reads the database learns no cookie or key, and the two prefixes keep API keys and browsers apart.
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
VISITOR_PREFIX = "v:"  # owner key of a visitor cookie
KEY_PREFIX = "k:"  # owner key of an API bearer token
HASH_HEX = 48  # 192 bits of SHA-256: "v:" + 48 hex digits fits generation.owner (64)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
_HF_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,59}$")


def new_token() -> str:
    """A fresh visitor id (192 bits)."""
    return secrets.token_urlsafe(24)


def valid(token: str | None) -> bool:
    """Whether a cookie value looks like one of our visitor ids."""
    return bool(token) and bool(_TOKEN.match(token or ""))


def owner_key(token: str, prefix: str = VISITOR_PREFIX) -> str:
    """The one-way owner key of a secret token: ``prefix`` + the first ``HASH_HEX`` hex digits of its SHA-256."""
    return prefix + hashlib.sha256(token.encode()).hexdigest()[:HASH_HEX]


def visitor_token(request: Any) -> str | None:
    """The raw visitor id of a Gradio/Starlette request, or None: a secret, never an owner (see ``owner``)."""
    if request is None:
        return None
    cookies = getattr(request, "cookies", None)
    if cookies is None and getattr(request, "request", None) is not None:
        cookies = request.request.cookies
    token = (cookies or {}).get(COOKIE)
    return token if valid(token) else None


def bearer_token(request: Any) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None without one (or with another scheme).

    Raises ValueError for a bearer token that is not 32–64 characters of ``A-Z a-z 0-9 _ -``."""
    raw = getattr(request, "request", None) or request
    headers = getattr(raw, "headers", None) or getattr(request, "headers", None) or {}
    scheme, _, token = (headers.get("authorization") or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    if not valid(token):
        raise ValueError(
            "the Authorization bearer token must be 32–64 characters of A-Z a-z 0-9 _ - "
            "(make one with python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return token


def install(app: Any) -> None:
    """Middleware that gives every browser without a valid visitor cookie a new one."""

    @app.middleware("http")
    async def visitor_cookie(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        if not valid(request.cookies.get(COOKIE)):
            response.set_cookie(
                COOKIE,
                new_token(),
                max_age=400 * 24 * 3600,
                httponly=True,
                samesite="lax",
                secure=request.url.scheme == "https",
            )
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
    """The owner key of a request's records in multi-user mode: ``hf:<user>`` with OAuth, else ``v:<hash>`` of
    the visitor cookie, else None."""
    name = hf_username(request, env)
    if name:
        return HF_PREFIX + name
    token = visitor_token(request)
    return owner_key(token) if token else None


def api_owner(request: Any, env: Mapping[str, str] | None = None) -> str | None:
    """The owner key of an API call: ``k:<hash>`` of its bearer token, else ``owner(request)`` (the visitor cookie
    that gradio_client keeps from its first response), else None. Raises ValueError for a malformed bearer token."""
    token = bearer_token(request)
    return owner_key(token, KEY_PREFIX) if token else owner(request, env)
