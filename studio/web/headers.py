"""Host checks and anti-framing headers for every response of the studio's web app (one ASGI middleware).

``install_security_headers(app, ...)`` (called by app.py before any route is added) does two things:

* **Host names.** A request whose ``Host`` is not an allowed host is refused with a 403 before any route runs: a
  DNS-rebinding page (``evil.example`` resolving to this server) then reaches nothing. Allowed: loopback names, any
  IP address (a rebinding attack needs a name the attacker controls), the ``--host`` name, the host of
  ``--share-base-url``, ``SPACE_HOST`` on Spaces, and ``--allowed-hosts`` / ``STUDIO_ALLOWED_HOSTS`` (comma-separated;
  ``*`` turns the check off, e.g. behind a proxy that already checks names). On Hugging Face Spaces
  (``SPACE_ID`` set) only POST actions check the host: the Spaces proxy routes by host name, so a rebinding name
  cannot reach the Space, and a custom domain must not lock visitors out. The policy is kept as
  ``app.state.host_policy`` for ``studio.web.detail.same_site`` (the CSRF check of the gallery's POST actions).
* **Framing.** Every ``text/html`` response gets ``Content-Security-Policy: frame-ancestors 'none'`` (merged into
  the response's own CSP: any ``frame-ancestors`` in it is replaced, the other directives are kept, so Gradio's
  scripts are untouched) and ``X-Frame-Options: DENY`` — no other site can frame a page and clickjack an action.
  On Spaces the studio is shown in an iframe on https://huggingface.co, so there ``frame-ancestors`` names
  ``https://huggingface.co`` and ``X-Frame-Options`` is left out: it cannot name an allowed framer (``ALLOW-FROM``
  is obsolete and ignored by browsers; ``DENY``/``SAMEORIGIN`` would blank the Space). Other sites still cannot
  frame it; embedding the Space's iframe elsewhere is refused by this choice.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
ANY_ADDRESS = frozenset({"", "0.0.0.0", "::"})  # binds that name no host
NO_FRAMING = "'none'"
SPACES_FRAMING = "https://huggingface.co"


def hostname(netloc: str | None) -> str | None:
    """The lower-case host name of a ``Host`` header or URL netloc (port and IPv6 brackets dropped); None if bad."""
    if not netloc or any(c in netloc for c in "/?#@\\ "):
        return None
    try:
        return urlsplit(f"//{netloc}").hostname or None
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return None


def is_ip(name: str) -> bool:
    """Whether ``name`` is an IP address literal."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class HostPolicy:
    """Which host names this site answers to, and which Origins are this site."""

    names: frozenset[str] = LOOPBACK  # Host names allowed (IP addresses always are)
    public: frozenset[str] = frozenset()  # names of the configured public URL(s): an Origin there is this site
    any_host: bool = False  # no host check (``*``, or a bare app without install_security_headers)

    def host_allowed(self, host: str | None) -> bool:
        """Whether a request's ``Host`` header names this site."""
        if self.any_host:
            return True
        name = hostname(host)
        return name is not None and (name in self.names or is_ip(name))

    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """Whether ``Origin`` is this site: the (allowed) ``Host`` the request came to, or a configured public name."""
        if not origin or origin == "null" or not self.host_allowed(host):
            return False
        netloc = urlsplit(origin).netloc
        return netloc.lower() == (host or "").lower() or hostname(netloc) in self.public


def split_hosts(value: str | Iterable[str] | None) -> list[str]:
    """Host names from ``--allowed-hosts`` / ``STUDIO_ALLOWED_HOSTS`` (comma- or space-separated; ports dropped)."""
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value or [])
    return ["*" if item == "*" else hostname(item) or item.lower() for item in items]


def host_policy(
    bind_host: str = "127.0.0.1",
    share_base_url: str | None = None,
    allowed_hosts: str | Iterable[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> HostPolicy:
    """The policy for a server bound to ``bind_host``: loopback, the bind name, the public URL's host, ``SPACE_HOST``
    and ``allowed_hosts`` (``*``: any host)."""
    env = os.environ if env is None else env
    extra = split_hosts(allowed_hosts)
    public = {hostname(urlsplit(share_base_url).netloc) if share_base_url else None, hostname(env.get("SPACE_HOST"))}
    public = {name for name in public | set(extra) if name and name != "*"}
    public -= {name for name in public if name in LOOPBACK or is_ip(name)}  # local pages must match the Host exactly
    bind = set() if bind_host in ANY_ADDRESS else {hostname(bind_host)} - {None}
    return HostPolicy(frozenset(LOOPBACK | bind | public), frozenset(public), any_host="*" in extra)


def policy_of(request: Request) -> HostPolicy:
    """The app's HostPolicy; a bare app (unit tests) without ``install_security_headers`` trusts any Host."""
    return getattr(request.app.state, "host_policy", None) or HostPolicy(any_host=True)


def with_frame_ancestors(policy: str, ancestors: str) -> str:
    """``policy`` (a CSP) with its ``frame-ancestors`` directive replaced by (or added as) ``ancestors``."""
    directives = [d.strip() for d in policy.split(";") if d.strip()]
    kept = [d for d in directives if d.split()[0].lower() != "frame-ancestors"]
    return "; ".join([*kept, f"frame-ancestors {ancestors}"])


def add_frame_headers(message: Message, ancestors: str, deny: bool) -> None:
    """Set the anti-framing headers on an ``http.response.start`` message (in place): on every HTML response, and
    on any other response that already carries some (e.g. the share PNG's CSP), so that Spaces' rule holds there too."""
    message.setdefault("headers", [])
    headers = MutableHeaders(scope=message)
    html = headers.get("content-type", "").lower().startswith("text/html")
    if not html and "content-security-policy" not in headers and "x-frame-options" not in headers:
        return
    policies = headers.getlist("content-security-policy") or [""]
    del headers["content-security-policy"]
    for policy in policies:  # every CSP header is enforced: each one gets the same frame-ancestors
        headers.append("content-security-policy", with_frame_ancestors(policy, ancestors))
    del headers["x-frame-options"]
    if deny:
        headers.append("x-frame-options", "DENY")


class SecurityHeaders:
    """ASGI middleware: refuse disallowed Host names (when ``check_hosts``) and add anti-framing headers to HTML."""

    def __init__(self, app: ASGIApp, policy: HostPolicy, on_spaces: bool = False) -> None:
        self.app = app
        self.policy = policy
        self.check_hosts = not on_spaces
        self.ancestors = SPACES_FRAMING if on_spaces else NO_FRAMING
        self.deny = not on_spaces

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host")
        if self.check_hosts and not self.policy.host_allowed(host):
            await self._refuse(scope, receive, send, host)
            return
        await self.app(scope, receive, self._framed(send) if scope["type"] == "http" else send)

    def _framed(self, send: Send) -> Send:
        """``send`` that adds the anti-framing headers to the response's start message."""

        async def framed(message: Message) -> None:
            if message["type"] == "http.response.start":
                add_frame_headers(message, self.ancestors, self.deny)
            await send(message)

        return framed

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, host: str | None) -> None:
        """A 403 page naming the fix (a WebSocket is closed with a policy-violation code)."""
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        from studio.web.share import error_page

        response = error_page(
            403,
            f"This studio does not answer to the host name {host!r} — open it by an "
            "allowed name; the operator can add one with --allowed-hosts / STUDIO_ALLOWED_HOSTS.",
        )
        await response(scope, receive, self._framed(send))


def install_security_headers(
    app: Any,
    bind_host: str = "127.0.0.1",
    share_base_url: str | None = None,
    allowed_hosts: str | Iterable[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> HostPolicy:
    """Add the SecurityHeaders middleware to ``app`` (before it starts) and keep its policy as
    ``app.state.host_policy``; Hugging Face Spaces (``SPACE_ID``) get the framing and host rules described above."""
    env = os.environ if env is None else env
    policy = host_policy(bind_host, share_base_url, allowed_hosts, env)
    app.state.host_policy = policy
    app.add_middleware(SecurityHeaders, policy=policy, on_spaces=bool(env.get("SPACE_ID")))
    return policy
