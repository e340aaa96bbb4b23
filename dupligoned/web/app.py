"""The review page and its JSON API: a Litestar app, a thin shell over ``services``.

Every handler is ``async`` and runs on the server's event loop, so the one index connection is
only ever used from one thread. Pages are plain HTML forms that work without JavaScript; the
script in ``web/static`` adds keyboard shortcuts, live progress and upload progress.

Security: a password login (when ``[web] password_hash`` is set) with a signed, expiring cookie;
CSRF tokens on every change (Litestar's double-submit cookie, ``x-csrftoken`` header or
``_csrf_token`` form field); photos addressed by id only; full-size previews through signed,
expiring links; a strict CSP without inline script, ``nosniff`` and frame denial on every
response.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.config.csrf import CSRFConfig
from litestar.connection import ASGIConnection
from litestar.datastructures import UploadFile
from litestar.enums import ScopeType
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
)
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import File, Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from litestar.types import ASGIApp, Receive, Scope, Send

from dupligoned import __version__
from dupligoned.adapters.config import Config
from dupligoned.adapters.index import Index, open_index
from dupligoned.adapters.thumbs import ThumbStore
from dupligoned.core.quality import QualityWeights
from dupligoned.errors import DupliGoneError
from dupligoned.services import mirror, sessions, trash
from dupligoned.services import review as rv
from dupligoned.services import rules as rules_service
from dupligoned.services.review import ReviewError
from dupligoned.web import uploads
from dupligoned.web.middleware import allowed_host_names, gatekeeper, security_headers_hook
from dupligoned.web.security import LoginStore, LoginThrottle, Signer, load_secret, verify_password

log = logging.getLogger("dupligone.web")

ASSETS = Path(__file__).resolve().parent / "assets"
TEMPLATES = ASSETS / "templates"
STATIC = ASSETS / "static"
LOGIN_COOKIE = "dupligone_login"
CSRF_COOKIE = "dupligone_csrf"
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
BROWSER_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
CLOSE_WAIT_S = 120.0
_MOVES = threading.Lock()  # one batch of file moves (confirm, restore) at a time, off the event loop

def _csp(img_origins: tuple[str, ...] = ()) -> bytes:
    # Mirrored photos are shown straight from Azure Blob through signed links: that origin,
    # and no other, may serve images too.
    img = " ".join(("'self'", "data:", *img_origins))
    return (f"default-src 'self'; script-src 'self'; style-src 'self'; img-src {img}; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'").encode()


SECURITY_HEADERS = [
    (b"content-security-policy", _csp()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # Session tokens are in page URLs: never sent to another site. Same-origin requests keep
    # their Origin (``no-referrer`` would make it "null" and fail the Origin check).
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


def body_limit(limits: dict[str, int], max_mb: float) -> Callable[[ASGIApp], ASGIApp]:
    """ASGI middleware: uploads larger than their limit are refused from their Content-Length,
    before a byte of the body is read (the upload routes have no other body limit)."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            limit = limits.get(scope.get("path", "")) if scope["type"] == ScopeType.HTTP else None
            if limit is not None and scope.get("method") == "POST":
                length = dict(scope.get("headers", [])).get(b"content-length")
                problem = None
                if length is None or not length.isdigit():
                    status, problem = 411, "send the upload with a Content-Length"
                elif int(length) > limit:
                    status, problem = 413, (f"too large: a photo may be at most {max_mb:g} MB "
                                            "([web] max_upload_mb); nothing was stored")
                if problem is not None:
                    body = json.dumps({"status_code": status, "detail": problem}).encode()
                    start: Any = {"type": "http.response.start", "status": status,
                                  "headers": [(b"content-type", b"application/json"),
                                              (b"content-length", str(len(body)).encode()), *SECURITY_HEADERS]}
                    await send(start)
                    end: Any = {"type": "http.response.body", "body": body}
                    await send(end)
                    return
            await app(scope, receive, send)

        return middleware

    return wrap


# ---------------------------------------------------------------- state

@dataclass
class WebState:
    cfg: Config
    signer: Signer
    index_path: str
    weights: QualityWeights
    root_for: Callable[[str], str]
    thumbs: ThumbStore
    roots: tuple[str, ...]  # folders a served photo must be inside
    pending_close: dict[str, float] = field(default_factory=dict)  # upload token -> give up at
    logins: LoginStore | None = None  # the logins valid now (logout and set-password end them)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    _index: Index | None = None
    _generation: int = 0

    @property
    def index(self) -> Index:
        if self._index is None:
            self._index = open_index(self.index_path)
        return self._index

    @property
    def password_required(self) -> bool:
        self._reload_password()
        return bool(self.cfg.web.password_hash)

    def _reload_password(self) -> None:
        # `dupligone set-password` ends every login through the login store; the new hash is
        # read from the config file then, not at the next restart.
        if self.logins is None or self.logins.changed() == self._generation:
            return
        self._generation = self.logins.generation
        if self.cfg.source:
            from dataclasses import replace

            from dupligoned.adapters.config import load_config
            try:
                new = load_config(self.cfg.source).web.password_hash
            except DupliGoneError as exc:
                log.warning("the config could not be read again for the new password: %s", exc)
                return
            if new:  # never drop to no password while running (check_listen ran at start)
                self.cfg = replace(self.cfg, web=replace(self.cfg.web, password_hash=new))

    def login_fingerprint(self) -> str:
        # Changing the password ends every login.
        return self.signer.sign("pw:" + (self.cfg.web.password_hash or ""))[:16]

    def _login(self, cookies: dict[str, str]) -> dict[str, Any] | None:
        tok = cookies.get(LOGIN_COOKIE)
        data = self.signer.read_token("login", tok) if tok else None
        if not data or data.get("pw") != self.login_fingerprint():
            return None
        if self.logins is not None and not self.logins.valid(str(data.get("lid", ""))):
            return None
        return data

    def logged_in(self, cookies: dict[str, str]) -> bool:
        if not self.password_required:
            return True
        return self._login(cookies) is not None

    def _csrf_mark(self, csrf_cookie: str) -> str:
        return self.signer.sign("csrf:" + csrf_cookie)[:16]

    def csrf_bound(self, cookies: dict[str, str]) -> bool:
        """Whether the CSRF cookie is the one this login was made with (Litestar's CSRF check
        then ties the form's token to that cookie)."""
        data = self._login(cookies)
        return data is not None and data.get("c") == self._csrf_mark(cookies.get(CSRF_COOKIE, ""))

    def login_cookie(self, csrf_cookie: str = "") -> str:
        ttl = self.cfg.web.login_days * 86400
        lid = self.logins.add(ttl) if self.logins is not None else ""
        return self.signer.token("login", {"pw": self.login_fingerprint(), "lid": lid,
                                           "c": self._csrf_mark(csrf_cookie)}, ttl)

    def logout(self, cookies: dict[str, str]) -> None:
        data = self._login(cookies)
        if data is not None and self.logins is not None:
            self.logins.end(str(data.get("lid", "")))

    async def check_password(self, request: Request[Any, Any, Any], password: str) -> Response[Any] | None:
        """None when ``password`` is right; else the answer: 429 while the client (or everyone)
        must wait, 401 for a wrong password. scrypt runs off the event loop."""
        client = request.client.host if request.client else "?"
        wait = self.throttle.begin(client)
        if wait is not None:
            return _error_page(request, 429, f"too many login attempts; try again in {wait:.0f} s",
                               headers={"retry-after": str(max(1, int(wait + 0.999)))})
        ok = False
        try:
            ok = await asyncio.to_thread(verify_password, password, self.cfg.web.password_hash or "")
        finally:
            self.throttle.end(client, ok)
        return None if ok else _error_page(request, 401, "wrong password")

    def preview_url(self, photo_id: int) -> str:
        """A time-limited link to the full photo: a read-only SAS link when the Azure mirror
        holds it (the local form otherwise: an HMAC-signed link to this server)."""
        if self.cfg.azure is not None:
            try:
                sas = mirror.preview_url(self.index, self.cfg, photo_id)
            except DupliGoneError as exc:  # a missing extra or a bad connection string
                log.warning("Azure preview links unavailable: %s", exc)
                sas = None
            if sas:
                return sas
        return f"/preview/{photo_id}?{self.signer.preview_query(photo_id, self.cfg.web.preview_ttl_s)}"


def _blob_origins(cfg: Config) -> tuple[str, ...]:
    """The Azure Blob origin previews may come from (none without the Azure mirror)."""
    if cfg.azure is None:
        return ()
    try:
        return (mirror.blob_origin(cfg),)
    except DupliGoneError as exc:
        log.warning("Azure preview links unavailable: %s", exc)
        return ()


def _state(request: Request[Any, Any, Any] | ASGIConnection[Any, Any, Any, Any]) -> WebState:
    st: WebState = request.app.state.web
    return st


# ---------------------------------------------------------------- guards and errors

def require_login(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    if handler.opt.get("public") or connection.url.path.startswith("/api/schema"):
        return  # the OpenAPI schema is public: it describes the API, it holds no data
    if not _state(connection).logged_in(dict(connection.cookies)):
        raise NotAuthorizedException("log in first (POST /api/login with the password)")


def _is_api(request: Request[Any, Any, Any]) -> bool:
    return request.url.path.startswith("/api/")


def _error_page(request: Request[Any, Any, Any], status: int, message: str,
                headers: dict[str, str] | None = None) -> Response[Any]:
    if _is_api(request):
        return Response({"status_code": status, "detail": message}, status_code=status, media_type=MediaType.JSON,
                        headers=headers)
    return Template("error.html", context={"status": status, "message": message, **_common(request)},
                    status_code=status, headers=headers)


def on_not_authorized(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if _is_api(request):
        return _error_page(request, 401, str(getattr(exc, "detail", "")) or "log in first")
    nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Redirect(f"/login?{urlencode({'next': nxt})}")


def on_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    message = str(exc.detail)
    if status == 413:
        mb = _state(request).cfg.web.max_upload_mb
        message = f"too large: a photo may be at most {mb:g} MB ([web] max_upload_mb); nothing was stored"
    elif isinstance(exc, PermissionDeniedException) and "CSRF" in message:
        message = "the form has expired or did not come from this page (CSRF check failed); reload and try again"
    return _error_page(request, status, message, headers=dict(exc.headers or {}) or None)


def on_review_error(request: Request[Any, Any, Any], exc: ReviewError) -> Response[Any]:
    status = 404 if isinstance(exc, rv.UnknownSession | rv.UnknownPhoto) else 409
    return _error_page(request, status, str(exc))


def on_upload_refused(request: Request[Any, Any, Any], exc: uploads.UploadRefused) -> Response[Any]:
    return _error_page(request, exc.status, str(exc))


def on_trash_error(request: Request[Any, Any, Any], exc: trash.TrashError) -> Response[Any]:
    return _error_page(request, 409, str(exc))


# ---------------------------------------------------------------- helpers

def _common(request: Request[Any, Any, Any]) -> dict[str, Any]:
    st = _state(request)
    from dupligoned.services.status import notices

    return {"logged_in": st.password_required and st.logged_in(dict(request.cookies)),
            "password_required": st.password_required, "version": __version__, "path": request.url.path,
            # A library offline, analysis paused for want of space: said on every page.
            "notices": notices(st.index, st.cfg)}


def _page(request: Request[Any, Any, Any], name: str, status: int = 200, **context: Any) -> Template:
    return Template(name, context={**_common(request), **context}, status_code=status)


MAX_ID = 2**63 - 1  # SQLite's largest integer: a larger id names nothing (404, never 500)


def _id(n: int, what: str = "photo") -> int:
    if not 0 < n <= MAX_ID:
        raise NotFoundException(f"no such {what}")
    return n


def _token(token: str) -> str:
    if not TOKEN_RE.match(token):
        raise NotFoundException("no such session")
    return token


def _with_urls(st: WebState, res: dict[str, Any]) -> dict[str, Any]:
    for g in res["groups"]:
        for p in g["photos"]:
            p["thumb_url"] = f"/thumb/{p['id']}" if p["has_thumb"] else None
            p["preview_url"] = st.preview_url(p["id"])
    for p in res.get("split", []):
        p["thumb_url"] = f"/thumb/{p['id']}" if p["has_thumb"] else None
    return res


def _wait(st: WebState, s: dict[str, Any]) -> dict[str, Any]:
    """What an unfinished session waits for (an upload counts the files already stored)."""
    received = uploads.received(os.path.join(str(st.cfg.inbox_path), s["token"])) if s["kind"] == "upload" else None
    return rv.waiting(s, st.cfg.sessions.quiet_s, time.time(), received)


def _safe_next(nxt: str | None) -> str:
    if nxt and nxt.startswith("/") and not nxt.startswith("//") and "\\" not in nxt:
        return nxt
    return "/"


def human_bytes(n: float | None) -> str:
    n = float(n or 0)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def when(ts: float | None) -> str:
    return datetime.fromtimestamp(float(ts)).strftime("%Y-%m-%d %H:%M") if ts else ""


def folder_name(path: str) -> str:
    """The last two parts of a folder's path: enough to recognise it in a list."""
    parts = [x for x in path.split("/") if x]
    return "/".join(parts[-2:]) if parts else "/"


def exif_date(s: str | None) -> str:
    if not s:
        return "unknown"
    return s.replace(":", "-", 2) if re.match(r"^\d{4}:\d\d:\d\d", s) else s


def _engine_callback(engine: JinjaTemplateEngine) -> None:
    engine.engine.filters.update(bytes=human_bytes, when=when, exif_date=exif_date, folder_name=folder_name)
    engine.engine.globals["session_link"] = lambda token: "/s/" + quote(token)


# ---------------------------------------------------------------- public

@get("/healthz", opt={"public": True}, tags=["health"])
async def healthz(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Liveness: the server answers and the index can be read. Needs no login."""
    return {"ok": True, "version": __version__, "sessions": _state(request).index.session_count()}


@get("/login", opt={"public": True}, include_in_schema=False)
async def login_page(request: Request[Any, Any, Any], next: FromQuery[str | None] = None) -> Template:  # noqa: A002
    return _page(request, "login.html", next=_safe_next(next), error=None)


@post("/login", opt={"public": True}, include_in_schema=False)
async def login_form(request: Request[Any, Any, Any]) -> Response[Any]:
    form = await request.form()
    st = _state(request)
    nxt = _safe_next(str(form.get("next") or "/"))
    if not st.password_required:
        return Redirect(nxt)
    refused = await st.check_password(request, str(form.get("password") or ""))
    if refused is not None:
        error = "Wrong password." if refused.status_code == 401 else "Too many attempts: wait a moment and try again."
        return _page(request, "login.html", status=refused.status_code or 401, next=nxt, error=error)
    resp = Redirect(nxt)
    resp.set_cookie(LOGIN_COOKIE, st.login_cookie(request.cookies.get(CSRF_COOKIE, "")), max_age=int(st.cfg.web.login_days * 86400), httponly=True,
                    samesite="strict")
    return resp


@post("/logout", include_in_schema=False)
async def logout(request: Request[Any, Any, Any]) -> Response[Any]:
    _state(request).logout(dict(request.cookies))
    resp = Redirect("/login" if _state(request).password_required else "/")
    resp.delete_cookie(LOGIN_COOKIE)
    return resp


@dataclass
class LoginBody:
    password: str


@post("/api/login", opt={"public": True}, tags=["auth"], status_code=200)
async def api_login(request: Request[Any, Any, Any], data: JSONBody[LoginBody]) -> Response[dict[str, Any]]:
    """Log in: sets the login cookie. Send it back with the CSRF cookie and ``x-csrftoken`` header."""
    st = _state(request)
    if st.password_required:
        refused = await st.check_password(request, data.password)
        if refused is not None:
            return refused
    resp = Response({"ok": True})
    if st.password_required:
        resp.set_cookie(LOGIN_COOKIE, st.login_cookie(request.cookies.get(CSRF_COOKIE, "")), max_age=int(st.cfg.web.login_days * 86400), httponly=True,
                        samesite="strict")
    return resp


@post("/api/logout", tags=["auth"], status_code=200)
async def api_logout(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    _state(request).logout(dict(request.cookies))
    resp = Response({"ok": True})
    resp.delete_cookie(LOGIN_COOKIE)
    return resp


@get("/preview/{photo_id:int}", opt={"public": True}, tags=["photos"])
async def preview(
    request: Request[Any, Any, Any], photo_id: FromPath[int], exp: FromQuery[int], sig: FromQuery[str]
) -> Response[Any]:
    """The full-size photo, through a signed link that expires (no login needed: the link is the key)."""
    st = _state(request)
    _id(photo_id)
    if not st.signer.preview_ok(photo_id, exp, sig):
        raise PermissionDeniedException("this preview link is invalid or has expired; reload the page")
    row = st.index.photo_file(photo_id)
    if row is None or row[2] == "gone":
        raise NotFoundException("no such photo")
    path = os.path.realpath(row[0])
    if not any(path.startswith(r + os.sep) for r in st.roots) or not os.path.isfile(path):
        raise NotFoundException("no such photo")
    headers = {"cache-control": "private, max-age=300"}
    media = BROWSER_FORMATS.get(row[1].upper())
    if media is None:  # HEIC, TIFF, AVIF: shown as a JPEG made on the fly
        data = await asyncio.to_thread(_as_jpeg, path, st.cfg.analysis.max_pixels)
        return Response(data, media_type="image/jpeg", headers=headers)
    return File(path, media_type=media, content_disposition_type="inline", headers=headers,
                filename=f"photo-{photo_id}")


def _as_jpeg(path: str, max_pixels: int) -> bytes:
    import io

    from dupligoned.adapters.decode import decode_photo

    dec = decode_photo(path, max_pixels=max_pixels, work_px=64, colour_px=4096)
    buf = io.BytesIO()
    assert dec.colour is not None
    dec.colour.convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


@get("/thumb/{photo_id:int}", tags=["photos"])
async def thumb(request: Request[Any, Any, Any], photo_id: FromPath[int]) -> File:
    """A photo's thumbnail from the thumbnail cache."""
    st = _state(request)
    rel = st.index.thumb_of(_id(photo_id))
    if not rel:
        raise NotFoundException("no thumbnail for this photo")
    try:
        path = st.thumbs.path(rel)
    except ValueError:
        raise NotFoundException("no thumbnail for this photo") from None
    return File(path, media_type="image/jpeg", content_disposition_type="inline",
                headers={"cache-control": "private, max-age=3600"}, filename=f"thumb-{photo_id}.jpg")


@get("/diff/{a:int}/{b:int}", tags=["photos"])
async def diff_image(request: Request[Any, Any, Any], a: FromPath[int], b: FromPath[int]) -> Response[Any]:
    """Where photo ``b`` differs from photo ``a``: ``a`` darkened, the differences in red (a PNG)."""
    from dupligoned.services.compare import difference_png

    st = _state(request)
    paths = []
    for pid in (a, b):
        row = st.index.photo_file(pid)
        path = os.path.realpath(row[0]) if row is not None and row[2] != "gone" else ""
        if not path or not any(path.startswith(r + os.sep) for r in st.roots) or not os.path.isfile(path):
            raise NotFoundException("no such photo")
        paths.append(path)
    try:
        data = await asyncio.to_thread(difference_png, paths[0], paths[1], max_pixels=st.cfg.analysis.max_pixels)
    except DupliGoneError as exc:
        raise NotFoundException(f"cannot compare these photos: {exc}") from None
    return Response(data, media_type="image/png", headers={"cache-control": "private, max-age=300"})


# ---------------------------------------------------------------- pages

@get("/", include_in_schema=False)
async def home_page(request: Request[Any, Any, Any]) -> Template:
    return _page(request, "home.html", **rv.home(_state(request).index))


OVERVIEW_PAGE = 120  # group cards on one overview page


@get("/s/{token:str}", include_in_schema=False)
async def session_page(request: Request[Any, Any, Any], token: FromPath[str], g: FromQuery[int | None] = None,
                       err: FromQuery[str | None] = None, order: FromQuery[str] = "uncertain",
                       reason: FromQuery[str] = "", folder: FromQuery[str] = "") -> Template:
    """Without ``g``: the overview of every group (filters: ``order``, ``reason``, ``folder``);
    with it: group ``g`` in the stepper."""
    st = _state(request)
    res = _with_urls(st, rv.result(st.index, _token(token), st.weights))
    res["session"]["wait"] = _wait(st, res["session"])
    groups = res["groups"]
    ov = None
    group = None
    n = 1
    gaps = []
    uncertain: list[str] = []
    if g is None and groups:
        ov = rv.overview(groups, order=order, reason=reason, folder=folder)
    elif groups:
        n = min(max(1, g or 1), len(groups))
        group = groups[n - 1]
        rv.mark_opened(st.index, token, group)  # shown: a confirm may take this group now
        rv.explain(group)
        uncertain = rv.uncertainty(group)
        gaps = [(k, rv.gap_fields(gap)) for k, gap in await asyncio.to_thread(rv.metadata_gaps, group)]
    return _page(request, "session.html", s=res["session"], res=res, group=group, n=n, total=len(groups),
                 gaps=gaps, error=err[:300] if err else None, ov=ov, order=order, reason=reason, folder=folder,
                 page_size=OVERVIEW_PAGE, uncertain=uncertain)


@get("/s/{token:str}/compare", include_in_schema=False)
async def compare_page(request: Request[Any, Any, Any], token: FromPath[str], g: FromQuery[int] = 1,
                       a: FromQuery[int | None] = None, b: FromQuery[int | None] = None,
                       diff: FromQuery[int] = 0, err: FromQuery[str | None] = None) -> Template:
    st = _state(request)
    res = _with_urls(st, rv.result(st.index, _token(token), st.weights))
    groups = res["groups"]
    if not groups:
        raise NotFoundException("this session has no groups to compare")
    n = min(max(1, g), len(groups))
    photos = groups[n - 1]["photos"]
    by_id = {p["id"]: p for p in photos}
    rv.mark_opened(st.index, token, groups[n - 1])
    rv.explain(groups[n - 1])
    left = by_id.get(a or -1, photos[0])
    right = by_id.get(b or -1, next((p for p in photos if p["id"] != left["id"]), photos[-1]))
    return _page(request, "compare.html", s=res["session"], group=groups[n - 1], n=n, total=len(groups),
                 left=left, right=right, diff=bool(diff), error=err[:300] if err else None)


def _back(token: str, g: int, anchor: str = "", err: str | None = None) -> str:
    q = {"g": str(g)}
    if err:
        q["err"] = err
    return f"/s/{quote(token)}?{urlencode(q)}{anchor}"


@post("/s/{token:str}/decide", include_in_schema=False)
async def decide_form(request: Request[Any, Any, Any], token: FromPath[str]) -> Redirect:
    form = await request.form()
    st = _state(request)
    g = _int(form.get("g"), 1)
    pid = _int(form.get("photo_id"), -1)
    err = None
    try:
        rv.decide(st.index, _token(token), pid, str(form.get("action") or ""))
    except rv.UnknownSession:
        raise
    except ReviewError as exc:
        err = str(exc)
    if form.get("back") == "compare":  # decided from the compare view: stay there
        q = {"g": str(g), "a": str(_int(form.get("a"), -1)), "b": str(_int(form.get("b"), -1))}
        if err:
            q["err"] = err
        return Redirect(f"/s/{quote(token)}/compare?{urlencode(q)}")
    return Redirect(_back(token, g, f"#p{pid}", err))


def _int(v: Any, default: int) -> int:
    try:
        n = int(str(v))
    except (TypeError, ValueError):
        return default
    return n if abs(n) <= MAX_ID else default


@post("/s/{token:str}/accept-all", include_in_schema=False)
async def accept_all_form(request: Request[Any, Any, Any], token: FromPath[str]) -> Redirect:
    rv.accept_all(_state(request).index, _token(token))
    return Redirect(f"/s/{quote(token)}/confirm")


@get("/s/{token:str}/confirm", include_in_schema=False)
async def dry_run_page(request: Request[Any, Any, Any], token: FromPath[str]) -> Template:
    st = _state(request)
    plan = await asyncio.to_thread(_plan, st, _token(token))
    s = rv.session_by_token(st.index, token)
    return _page(request, "confirm.html", s=rv.public_session(s), plan=plan, done=None)


def _plan(st: WebState, token: FromPath[str], include: rv.Include = False) -> rv.Plan:
    # Reading the photos' metadata takes file reads: off the event loop, on its own connection.
    idx = open_index(st.index_path)
    try:
        return rv.plan_confirm(idx, token, include)
    finally:
        idx.close()


@post("/s/{token:str}/confirm", include_in_schema=False)
async def confirm_form(request: Request[Any, Any, Any], token: FromPath[str]) -> Template:
    st = _state(request)
    form = await request.form()
    # Groups nobody reviewed move only when ticked on the dry run page.
    include = {i for i in (_int(v, -1) for v in form.getall("include")) if i >= 0} if "include" in form else set()
    done = await asyncio.to_thread(_confirm, st, _token(token), include)
    s = rv.session_by_token(st.index, token)
    return _page(request, "confirm.html", s=rv.public_session(s), plan=None, done=done.to_json())


@get("/trash", include_in_schema=False)
async def trash_page(request: Request[Any, Any, Any], restored: FromQuery[str | None] = None) -> Template:
    st = _state(request)
    return _page(request, "trash.html", entries=rv.trash_entries(st.index, st.cfg.trash.retention_days),
                 retention_days=st.cfg.trash.retention_days, restored=restored)


@post("/trash/{trash_id:int}/restore", include_in_schema=False)
async def restore_form(request: Request[Any, Any, Any], trash_id: FromPath[int]) -> Redirect:
    (path,) = await asyncio.to_thread(_restore, _state(request), [_id(trash_id, "trash entry")])
    return Redirect(f"/trash?{urlencode({'restored': os.path.basename(path)})}")


@post("/trash/restore", include_in_schema=False)
async def restore_many_form(request: Request[Any, Any, Any]) -> Redirect:
    """Restore the ticked entries, or all of them (``all``)."""
    st = _state(request)
    form = await request.form()
    if form.get("all"):
        ids = [int(str(e["id"])) for e in rv.trash_entries(st.index, st.cfg.trash.retention_days)]
    else:
        ids = [i for i in (_int(v, -1) for v in form.getall("ids")) if i >= 0] if "ids" in form else []
    if not ids:
        return Redirect("/trash")
    paths = await asyncio.to_thread(_restore, st, ids)
    what = os.path.basename(paths[0]) if len(paths) == 1 else f"{len(paths)} photos"
    return Redirect(f"/trash?{urlencode({'restored': what})}")


@get("/rules", include_in_schema=False)
async def rules_page(request: Request[Any, Any, Any], saved: FromQuery[int | None] = None,
                     err: FromQuery[str | None] = None) -> Template:
    st = _state(request)
    configured = rules_service.from_config(st.cfg.rules)
    current = rules_service.effective(st.index, configured)
    return _page(request, "rules.html", rules=current, from_page=st.index.get_meta(rules_service.META_KEY) is not None,
                 libraries=[lib.path for lib in st.cfg.libraries], saved=saved, error=err[:300] if err else None)


@post("/rules", include_in_schema=False)
async def rules_form(request: Request[Any, Any, Any]) -> Redirect:
    st = _state(request)
    form = await request.form()
    try:
        n = rules_service.save(st.index, [lib.path for lib in st.cfg.libraries], prefer=str(form.get("prefer") or ""),
                               keep_from=str(form.get("keep_from") or ""),
                               never_delete_from=str(form.get("never_delete_from") or ""))
    except rules_service.RulesError as exc:
        return Redirect(f"/rules?{urlencode({'err': str(exc)})}")
    return Redirect(f"/rules?saved={n}")


@get("/upload", include_in_schema=False)
async def upload_page(request: Request[Any, Any, Any]) -> Template:
    cfg = _state(request).cfg
    w = cfg.web
    return _page(request, "upload.html", max_mb=w.max_upload_mb, max_files=w.max_upload_files,
                 accepted=uploads.ACCEPTED, upload_dir=str(cfg.inbox_path))


# ---------------------------------------------------------------- uploads

async def _receive_files(request: Request[Any, Any, Any], token: FromPath[str] | None) -> tuple[str, list[dict[str, Any]]]:
    """Check every file of the request, then store them all (or nothing) in the session's inbox folder."""
    st = _state(request)
    form = await request.form()
    files = [f for f in form.getall("files") if isinstance(f, UploadFile)] if "files" in form else []
    if not files:
        raise uploads.UploadRefused("no file in the upload (send them as multipart field 'files')")
    max_bytes = int(st.cfg.web.max_upload_mb * 1_000_000)
    checked = []
    for f in files:
        head = await f.read(32)
        f.file.seek(0, os.SEEK_END)
        size = f.file.tell()
        f.file.seek(0)
        checked.append((f, uploads.check(f.filename or "", head, size, max_bytes)))
    if token is not None:
        _token(token)
        if st.index.session_kind(token) != "upload":
            raise NotFoundException("no such upload session")
    inbox_folder = str(st.cfg.inbox_path)
    if token is not None:
        folder = os.path.join(inbox_folder, token)
        have = len(os.listdir(folder)) if os.path.isdir(folder) else 0
        if have + len(checked) > st.cfg.web.max_upload_files:
            raise uploads.UploadRefused(
                f"too many photos in one upload: the limit is {st.cfg.web.max_upload_files} ([web] max_upload_files)", 413)
    elif len(checked) > st.cfg.web.max_upload_files:
        raise uploads.UploadRefused(
            f"too many photos in one upload: the limit is {st.cfg.web.max_upload_files} ([web] max_upload_files)", 413)
    if token is None:
        token = sessions.create_upload_session(st.index, time.time(), st.index.folder_id(os.path.realpath(inbox_folder)))
    folder = os.path.join(inbox_folder, token)
    out = []
    for f, fmt in checked:
        stored = await asyncio.to_thread(uploads.store, f.file, folder, f.filename or "", fmt)
        out.append({"name": stored.name, "size_bytes": stored.size_bytes, "format": stored.format})
    st.index.note_session_added(token, time.time())  # kept open while files keep coming
    return token, out


def _upload_limit(cfg: Config) -> int:
    return int(cfg.web.max_upload_mb * 1_000_000) + 1_000_000


@post("/upload", include_in_schema=False, request_max_body_size=None)
async def upload_form(request: Request[Any, Any, Any]) -> Redirect:
    """The upload without JavaScript: every picked file in one request."""
    token, _ = await _receive_files(request, None)
    _state(request).pending_close[token] = time.monotonic() + CLOSE_WAIT_S
    return Redirect(f"/s/{quote(token)}")


@post("/api/upload", tags=["upload"], status_code=201, request_max_body_size=None)
async def api_upload(request: Request[Any, Any, Any], session: FromQuery[str | None] = None) -> dict[str, Any]:
    """Upload photos (multipart field ``files``, one or many). Without ``session`` a new upload
    session starts; pass its token as ``?session=`` to add more files to it, then
    ``POST /api/upload/{token}/done``. Refused files (not a photo, too large) store nothing."""
    token, stored = await _receive_files(request, session)
    return {"token": token, "review_url": f"/s/{quote(token)}", "stored": stored}


@post("/api/upload/{token:str}/done", tags=["upload"], status_code=200)
async def api_upload_done(request: Request[Any, Any, Any], token: FromPath[str]) -> dict[str, Any]:
    """Every file of the upload is sent: the session closes once the daemon has seen them all."""
    st = _state(request)
    rv.session_by_token(st.index, _token(token))
    st.pending_close[token] = time.monotonic() + CLOSE_WAIT_S
    return {"token": token, "review_url": f"/s/{quote(token)}"}


async def close_finished_uploads(st: WebState) -> None:
    """Close upload sessions once every uploaded file has a row in the index (or after
    ``CLOSE_WAIT_S``; the daemon's ``quiet_s`` closes forgotten ones anyway)."""
    while True:
        await asyncio.sleep(0.3)
        for token, give_up_at in list(st.pending_close.items()):
            try:
                folder = os.path.join(str(st.cfg.inbox_path), token)
                files = [n for n in os.listdir(folder) if not n.startswith(".")] if os.path.isdir(folder) else []
                if st.index.session_photo_count(token) >= len(files) or time.monotonic() > give_up_at:
                    sessions.close_session(st.index, token, time.time())
                    del st.pending_close[token]
            except Exception:  # noqa: BLE001 - never let the loop die; try again next round
                log.exception("closing upload session %s", token[:6])


# ---------------------------------------------------------------- JSON API

@get("/api/status", tags=["sessions"])
async def api_status(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """What the home page shows: sessions with counts and progress, library totals, recent errors."""
    from dupligoned.services.status import notices

    st = _state(request)
    return {**rv.home(st.index), "notices": notices(st.index, st.cfg)}


@get("/api/sessions", tags=["sessions"])
async def api_sessions(request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
    """Every session, newest first: counts (photos, queued, errors, groups, to review, space to free) and state."""
    out: list[dict[str, Any]] = rv.home(_state(request).index)["sessions"]
    return out


@get("/api/sessions/{token:str}", tags=["sessions"])
async def api_session(request: Request[Any, Any, Any], token: FromPath[str]) -> dict[str, Any]:
    """One session's state and progress, and what it waits for (``wait``: words and figures)."""
    st = _state(request)
    s = rv.session_by_token(st.index, _token(token))
    return {**rv.public_session(s), "wait": _wait(st, s)}


@get("/api/sessions/{token:str}/result", tags=["sessions"])
async def api_result(request: Request[Any, Any, Any], token: FromPath[str]) -> dict[str, Any]:
    """The session's result (the seed's getResult): groups, photos with their figures,
    recommendations, decisions and verdicts, thumbnail and signed preview URLs."""
    st = _state(request)
    return _with_urls(st, rv.result(st.index, _token(token), st.weights))


@dataclass
class DecisionBody:
    photo_id: int
    action: str  # keep | delete | split | undo


@post("/api/sessions/{token:str}/decisions", tags=["sessions"], status_code=200)
async def api_decide(request: Request[Any, Any, Any], token: FromPath[str], data: JSONBody[DecisionBody]) -> dict[str, Any]:
    """Record a decision: ``keep``, ``delete``, ``split`` (not a duplicate) or ``undo``."""
    st = _state(request)
    rv.decide(st.index, _token(token), _id(data.photo_id), data.action)
    return {"ok": True}


@post("/api/sessions/{token:str}/accept-all", tags=["sessions"], status_code=200)
async def api_accept_all(request: Request[Any, Any, Any], token: FromPath[str]) -> dict[str, Any]:
    """Every undecided photo takes its recommendation."""
    return {"decided": rv.accept_all(_state(request).index, _token(token))}


@dataclass
class ConfirmBody:
    dry_run: bool = True
    include_unreviewed: bool = False  # also groups nobody opened, decided or accepted


@post("/api/sessions/{token:str}/confirm", tags=["sessions"], status_code=200)
async def api_confirm(request: Request[Any, Any, Any], token: FromPath[str], data: JSONBody[ConfirmBody]) -> dict[str, Any]:
    """With ``dry_run`` (the default): exactly what would move to trash, and the sidecars that
    would be written; nothing moves. Without: do it, in one batch.

    Only groups the person reviewed (opened on the page, decided, or accepted with accept-all)
    are confirmed; ``unreviewed`` lists the others, which move only with ``include_unreviewed``."""
    st = _state(request)
    _token(token)
    if data.dry_run:
        plan = await asyncio.to_thread(_plan, st, token, data.include_unreviewed)
        return {"dry_run": True, **plan.to_json()}
    done = await asyncio.to_thread(_confirm, st, token, data.include_unreviewed)
    return {"dry_run": False, **done.to_json()}


@get("/api/trash", tags=["trash"])
async def api_trash(request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
    """What is in the trash, newest first, with when each will be purged."""
    st = _state(request)
    return rv.trash_entries(st.index, st.cfg.trash.retention_days)


@post("/api/trash/{trash_id:int}/restore", tags=["trash"], status_code=200)
async def api_restore(request: Request[Any, Any, Any], trash_id: FromPath[int]) -> dict[str, Any]:
    """Put a file back at its original path, byte-identical. A restored photo is kept: it is
    not offered for deletion again against the same copies."""
    (path,) = await asyncio.to_thread(_restore, _state(request), [_id(trash_id, "trash entry")])
    return {"restored": path}


@dataclass
class RestoreBody:
    ids: list[int] = field(default_factory=list)
    all: bool = False  # noqa: A003 - every entry in the trash


@post("/api/trash/restore", tags=["trash"], status_code=200)
async def api_restore_many(request: Request[Any, Any, Any], data: JSONBody[RestoreBody]) -> dict[str, Any]:
    """Restore several entries (``ids``) or the whole trash (``all``); returns the paths restored."""
    st = _state(request)
    ids = ([int(str(e["id"])) for e in rv.trash_entries(st.index, st.cfg.trash.retention_days)] if data.all
           else [_id(i, "trash entry") for i in data.ids])
    return {"restored": await asyncio.to_thread(_restore, st, ids)}


def _restore(st: WebState, trash_ids: list[int]) -> list[str]:
    # Moving a file may copy it across devices: off the event loop, on its own connection.
    with _MOVES:
        idx = open_index(st.index_path)
        try:
            return rv.restore(idx, trash_ids)
        finally:
            idx.close()


def _confirm(st: WebState, token: str, include: rv.Include = False) -> rv.Confirmation:
    with _MOVES:
        idx = open_index(st.index_path)
        try:
            return rv.confirm(idx, token, st.root_for, include=include)
        finally:
            idx.close()


# ---------------------------------------------------------------- the app

def create_app(cfg: Config, *, index_path: str | None = None) -> Litestar:
    """The review app for ``cfg``. Raises ``FileNotFoundError`` when the templates are missing
    (a broken install)."""
    if not (TEMPLATES / "base.html").is_file() or not (STATIC / "app.js").is_file():
        raise FileNotFoundError(f"the review page's templates and static files are missing from {ASSETS}")
    secret = load_secret(cfg.state_dir)
    libs = [lib.path for lib in cfg.libraries]
    st = WebState(
        cfg=cfg, signer=Signer(secret), index_path=index_path or str(cfg.index_path),
        weights=QualityWeights(sharpness=cfg.keeper.weight_sharpness, brightness=cfg.keeper.weight_brightness,
                               contrast=cfg.keeper.weight_contrast, faces=cfg.keeper.weight_faces),
        root_for=trash.default_trash_root(cfg.trash.dir, libs + [str(cfg.inbox_path)]),
        thumbs=ThumbStore(cfg.thumbs_path),
        roots=tuple(os.path.realpath(p) for p in libs + [str(cfg.inbox_path)]),
        logins=LoginStore(cfg.state_dir),
    )
    st._generation = st.logins.changed() if st.logins is not None else 0
    tasks: list[asyncio.Task[None]] = []

    async def on_startup(app: Litestar) -> None:
        tasks.append(asyncio.create_task(close_finished_uploads(st)))

    async def on_shutdown(app: Litestar) -> None:
        for t in tasks:
            t.cancel()
        if st._index is not None:
            st._index.close()
            st._index = None

    limits = {"/api/upload": _upload_limit(cfg), "/upload": _upload_limit(cfg) * 20}
    app = Litestar(
        route_handlers=[
            healthz, login_page, login_form, logout, api_login, api_logout, preview, thumb, diff_image,
            home_page, session_page, compare_page, decide_form, accept_all_form, dry_run_page, confirm_form,
            trash_page, restore_form, restore_many_form, rules_page, rules_form, upload_page, upload_form, api_upload, api_upload_done,
            api_status, api_sessions, api_session, api_result, api_decide, api_accept_all, api_confirm,
            api_trash, api_restore, api_restore_many,
            create_static_files_router(path="/static", directories=[STATIC], opt={"public": True},
                                       cache_control=None),
        ],
        guards=[require_login],
        csrf_config=CSRFConfig(secret=secret.hex(), cookie_name=CSRF_COOKIE, header_name="x-csrftoken",
                               cookie_samesite="strict"),
        template_config=TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine,
                                       engine_callback=_engine_callback),
        openapi_config=OpenAPIConfig(title="DupliGone", version=__version__, path="/api/schema",
                                     render_plugins=[JsonRenderPlugin()],
                                     description="The review page's JSON API. Log in with POST /api/login, then send "
                                                 "the cookies back and the dupligone_csrf cookie's value as the "
                                                 "x-csrftoken header on every POST."),
        exception_handlers={
            NotAuthorizedException: on_not_authorized,
            HTTPException: on_http_error,
            ReviewError: on_review_error,
            uploads.UploadRefused: on_upload_refused,
            trash.TrashError: on_trash_error,
        },
        # The first runs first: host, origin and login are checked before the upload's size.
        middleware=[gatekeeper(allowed_host_names(cfg.web.host, cfg.web.allowed_hosts)),
                    body_limit(limits, cfg.web.max_upload_mb)],
        before_send=[security_headers_hook(
            [(b"content-security-policy", _csp(_blob_origins(cfg))), *SECURITY_HEADERS[1:]])],
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        request_max_body_size=1_000_000,
        debug=False,
        logging_config=None,  # the daemon's logging stays as it set it up
    )
    app.state.web = st
    return app
