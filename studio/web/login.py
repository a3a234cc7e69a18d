"""Gradio's own login session (``--auth``) read from a request, so the gallery routes need no second login."""

from __future__ import annotations

from typing import Any

from starlette.routing import Mount


def _gradio_app(app: Any) -> Any | None:
    """The Gradio app mounted on ``app`` (it holds the login tokens), or None before the mount."""
    for route in getattr(app, "routes", []):
        inner = getattr(route, "app", None)
        if isinstance(route, Mount) and hasattr(inner, "tokens") and hasattr(inner, "cookie_id"):
            return inner
    return None


def logged_in_user(app: Any, request: Any) -> str | None:
    """The user Gradio's login cookie names on ``request`` (None when absent, forged or logged out)."""
    gradio_app = _gradio_app(app)
    if gradio_app is None:
        return None
    cookie_id = gradio_app.cookie_id
    token = request.cookies.get(f"access-token-{cookie_id}") or request.cookies.get(
        f"access-token-unsecure-{cookie_id}"
    )
    user = gradio_app.tokens.get(token) if token else None
    return user if isinstance(user, str) else None
