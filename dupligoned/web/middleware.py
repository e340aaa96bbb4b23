"""The review page's gatekeeper: checks made from a request's headers, before a byte of its
body is read (ASGI middleware around every route, outside Litestar's CSRF check, which reads
form bodies).

* **Host allow-list** (DNS rebinding): the ``Host`` header must name this server — an IP
  address, ``localhost``, the configured ``[web] host``, this machine's name, or a name in
  ``[web] allowed_hosts``. A web page whose name was rebound to this machine's address sends
  its own name and is refused.
* **Same origin for every change**: a state-changing request (POST, PUT, PATCH, DELETE) whose
  ``Origin`` (or, without it, ``Referer``) is another site is refused, with or without a
  password. Clients that send neither (curl, scripts) still need the CSRF token.
* **Login before the body**: with a password set, a request to a route that needs a login is
  refused from its cookies alone, and a change must carry the CSRF cookie its login was made
  with (the token is bound to the login).
* **Uploads**: at most ``MAX_PARALLEL_UPLOADS`` upload requests at a time (429 beyond); their
  size is checked from ``Content-Length`` by ``body_limit`` in ``app``; their spooled temp files
  are closed (freed) as soon as the request is answered.
* **Security headers on every response**: a ``before_send`` hook, so Litestar's own 404 and 405
  answers (made before any route middleware runs) carry them too.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from litestar.connection import ASGIConnection
from litestar.datastructures import UploadFile
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from litestar.utils.scope.state import ScopeState

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_PARALLEL_UPLOADS = 4  # the page sends two at a time; a second device may upload too
UPLOAD_PATHS = ("/upload", "/api/upload")


class TooManyRequests(HTTPException):
    status_code = 429


def host_name(host: str) -> str:
    """The name part of a ``Host`` header, lower case: ``[::1]:8765`` -> ``::1``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def allowed_host_names(host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The names the page answers to besides IP addresses (an address cannot be rebound: a page
    served under it is this server's own)."""
    names = {"localhost", host_name(host)}
    try:
        me = socket.gethostname().lower()
    except OSError:  # pragma: no cover - no hostname at all
        me = ""
    if me:
        names |= {me, f"{me}.local", me.split(".", 1)[0]}
    names |= {host_name(h) for h in extra}
    return frozenset(n for n in names if n)


def host_allowed(host_header: str | None, names: frozenset[str]) -> bool:
    if not host_header:
        return False
    name = host_name(host_header)
    return _is_ip(name) or name in names


def same_origin(headers: dict[bytes, bytes]) -> bool:
    """Whether a change comes from this server's own pages: its ``Origin`` (else ``Referer``)
    names the host the request was sent to. Neither header: not a browser; the CSRF token decides."""
    host = headers.get(b"host", b"").decode("latin-1").strip().lower()
    origin = headers.get(b"origin")
    source = origin if origin is not None else headers.get(b"referer")
    if source is None:
        return True
    text = source.decode("latin-1").strip()
    if text == "null":  # sandboxed frames, data: URLs, file pages: never our own page
        return False
    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host


def _public(scope: Scope) -> bool:
    handler = scope.get("route_handler")
    opt = getattr(handler, "opt", None) or {}
    return bool(opt.get("public")) or str(scope.get("path", "")).startswith("/api/schema")


def gatekeeper(names: frozenset[str]) -> Any:
    """The middleware factory for ``Litestar(middleware=[...])``. The login is checked through
    ``scope["app"].state.web`` (``logged_in``, ``csrf_bound``)."""
    in_flight = [0]

    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            headers = dict(scope.get("headers", []))
            if not host_allowed(headers.get(b"host", b"").decode("latin-1"), names):
                raise HTTPException(
                    status_code=400,
                    detail="this server does not answer to that name; add it to [web] allowed_hosts")
            method = scope.get("method", "GET")
            unsafe = method in UNSAFE_METHODS
            if unsafe and not same_origin(headers):
                raise PermissionDeniedException("a change sent from another site is refused (Origin check)")
            st = scope["app"].state.web
            if not _public(scope) and st.password_required:
                cookies = dict(ASGIConnection(scope).cookies)
                if not st.logged_in(cookies):
                    raise NotAuthorizedException("log in first (POST /api/login with the password)")
                if unsafe and not st.csrf_bound(cookies):
                    raise PermissionDeniedException(
                        "CSRF check failed: the form's token is not the one of this login; reload the page")
            if unsafe and scope.get("path") in UPLOAD_PATHS:
                if in_flight[0] >= MAX_PARALLEL_UPLOADS:
                    raise TooManyRequests(
                        detail=f"{MAX_PARALLEL_UPLOADS} uploads are already running; try again in a moment",
                        headers={"retry-after": "2"})
                in_flight[0] += 1
                try:
                    await app(scope, receive, send)
                finally:
                    in_flight[0] -= 1
                    await _close_uploads(scope)
                return
            await app(scope, receive, send)

        return middleware

    return wrap


async def _close_uploads(scope: Scope) -> None:
    """Close the request's spooled upload files now (their disk space is freed at once), not
    whenever the request object is collected."""
    form = ScopeState.from_scope(scope).form
    if not isinstance(form, dict):
        return
    for value in form.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, UploadFile):
                await item.close()


def security_headers_hook(headers: Sequence[tuple[bytes, bytes]]) -> Any:
    """A Litestar ``before_send`` hook adding ``headers`` to every HTTP response that lacks them."""
    own = list(headers)

    async def hook(message: Message, scope: Scope) -> None:
        if message["type"] == "http.response.start":
            have = {k.lower() for k, _ in message.get("headers", [])}
            message["headers"] = [*message.get("headers", []), *((k, v) for k, v in own if k not in have)]

    return hook
