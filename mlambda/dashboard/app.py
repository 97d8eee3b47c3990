"""The dashboard's ASGI app under /dashboard.

Pages need a session: without one, a page redirects to the sign-in form and a data
endpoint (`/dashboard/api/...`) answers 401 JSON. A data endpoint is a read of the admin
API (GET only, a fixed list), run in-process on behalf of the session's key: one
implementation of every read, and the browser never holds an API key. Sign-in and
sign-out are the only state changes: both check a CSRF token and the Origin.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote, unquote

from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import cookie_parser

from mlambda.dashboard import assets, pages
from mlambda.dashboard.security import HEADERS, origin_matches, tokens_match
from mlambda.dashboard.sessions import Session, SessionStore
from mlambda.errors import ErrorInfo, Forbidden, NotFound, PayloadTooLarge, Unauthorized
from mlambda.gateway.http import (
    PRINCIPAL,
    Message,
    Receive,
    Scope,
    Send,
    error_body,
    header,
    read_body,
)
from mlambda.keys import ACTIVE, ApiKey, KeyRing

if TYPE_CHECKING:
    from mlambda.server import Platform

PREFIX = "/dashboard"
SESSION_COOKIE = "mlambda_session"
CSRF_COOKIE = "mlambda_signin"
FORM_LIMIT = 8192
READS = re.compile(
    r"^(functions(/[A-Za-z0-9_\-]+(/versions|/aliases)?)?|models(/[A-Za-z0-9_.\-]+)?"
    r"|logs|metrics|metrics/overview|cost)$")
HTML = (b"content-type", b"text/html; charset=utf-8")
NO_STORE = (b"cache-control", b"no-store")
FOREVER = (b"cache-control", b"public, max-age=31536000, immutable")
REVALIDATE = (b"cache-control", b"no-cache")
GZIP_LEVEL = 4  # the data's JSON: 5x smaller for ~2 ms a 175 kB answer (level 9: 50 ms)


class Dashboard:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        s = platform.settings
        self.sessions = SessionStore(s.dashboard_idle_min * 60, s.dashboard_session_h * 3600)

    @property
    def keyring(self) -> KeyRing:
        return self.platform.gateway.keyring  # the keys in force now

    # -- plumbing ---------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers += [h for h in HEADERS if h[0] not in names]
                message = {**message, "headers": headers}
            await send(message)

        await self.route(scope, receive, secured)

    async def route(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        rest = path[len(PREFIX):]
        if rest == "":
            return await redirect(send, f"{PREFIX}/")
        if rest.startswith("/static/") and method in ("GET", "HEAD"):
            return await self.static(scope, send, rest[len("/static/"):])
        if rest == "/signin":
            if method == "POST":
                return await self.signin(scope, receive, send)
            return await self.signin_form(scope, send)
        session = self.session(scope)
        if rest == "/signout" and method == "POST":
            return await self.signout(scope, receive, send, session)
        if rest.startswith("/api/"):
            if session is None:
                return await json_error(send, 401, Unauthorized(
                    "not signed in to the dashboard (or the session expired)").info())
            if method != "GET":
                return await json_error(send, 405, NotFound("the dashboard's data is read-only: "
                                                            "use GET").info())
            return await self.read(scope, receive, send, rest[len("/api/"):])
        if session is None:
            return await redirect(send, f"{PREFIX}/signin")
        if method != "GET":
            return await html(send, 405, "<h1>405</h1>")
        if rest == "/":
            return await html(send, 200, pages.overview(session.csrf))
        if rest == "/models":
            return await html(send, 200, pages.models(session.csrf))
        m = re.fullmatch(r"/functions/([A-Za-z0-9_\-]+)", rest)
        if m and m.group(1) in self.platform.registry.functions():
            return await html(send, 200, pages.function(session.csrf, m.group(1)))
        await html(send, 404, pages.layout("Not found", "missing",
                                           "<h1>Not found</h1>", session.csrf))

    def session(self, scope: Scope) -> Session | None:
        token = cookies(scope).get(SESSION_COOKIE)
        return self.sessions.get(token, lambda key_id: self.admin_key(key_id) is not None)

    def admin_key(self, key_id: str) -> ApiKey | None:
        """The key, if it may still use the admin API now."""
        now = time.time()
        for key in self.keyring.by_hash.values():
            if key.key_id == key_id:
                usable = key.state == ACTIVE and (key.expires_at is None
                                                  or now < key.expires_at)
                return key if usable and key.may("admin") else None
        return None

    # -- sign-in and sign-out ---------------------------------------------------------

    async def signin_form(self, scope: Scope, send: Send, error: str | None = None,
                          status: int = 200) -> None:
        """The form's CSRF token, also in a short-lived cookie: the post must carry both
        (double submit), so another site cannot sign a browser in. A browser that has
        the cookie keeps its token (two tabs, or a page loaded twice, still match)."""
        token = cookies(scope).get(CSRF_COOKIE, "")
        if not re.fullmatch(r"[A-Za-z0-9_\-]{43}", token):
            token = secrets.token_urlsafe(32)
        await html(send, status, pages.signin(token, error),
                   [set_cookie(CSRF_COOKIE, token, 600)])

    async def signin(self, scope: Scope, receive: Receive, send: Send) -> None:
        form = await read_form(scope, receive)
        if not (same_origin(scope)
                and tokens_match(cookies(scope).get(CSRF_COOKIE), form.get("csrf"))):
            return await self.signin_form(scope, send, "The form expired; please sign in again.",
                                          403)
        try:
            key = self.keyring.check(form.get("key", "").strip().encode(), time.time())
        except Forbidden as exc:
            return await self.signin_form(scope, send, exc.message, 401)
        if not key.may("admin"):
            return await self.signin_form(scope, send, "That is not an admin key.", 401)
        token, _ = self.sessions.open(key.key_id)
        await redirect(send, f"{PREFIX}/", [
            set_cookie(SESSION_COOKIE, token, int(self.sessions.max_s), secure=is_https(scope)),
            set_cookie(CSRF_COOKIE, "", 0)])

    async def signout(self, scope: Scope, receive: Receive, send: Send,
                      session: Session | None) -> None:
        form = await read_form(scope, receive)
        if session is not None:
            if not (same_origin(scope)
                    and tokens_match(session.csrf, form.get("csrf"))):
                return await html(send, 403, pages.layout(
                    "Refused", "missing", "<h1>Sign-out refused: bad CSRF token</h1>",
                    session.csrf))
            self.sessions.close(cookies(scope).get(SESSION_COOKIE))
        await redirect(send, f"{PREFIX}/signin", [set_cookie(SESSION_COOKIE, "", 0)])

    # -- data and files ---------------------------------------------------------------

    async def read(self, scope: Scope, receive: Receive, send: Send, what: str) -> None:
        if not READS.fullmatch(what):
            return await json_error(send, 404, NotFound(f"no dashboard data at {what}").info())
        session = self.session(scope)
        assert session is not None
        key = self.admin_key(session.key_id)
        path = f"/admin/v1/{what}"
        sub = {**scope, "path": path, "raw_path": quote(path).encode(), PRINCIPAL: key,
               "headers": [(k, v) for k, v in scope["headers"]
                           if k not in (b"cookie", b"x-api-key", b"authorization")]}
        compressed = GZipMiddleware(self.platform.gateway.admin, minimum_size=1024,
                                    compresslevel=GZIP_LEVEL)
        await compressed(sub, receive, send)

    async def static(self, scope: Scope, send: Send, name: str) -> None:
        """A static file: kept a year under its fingerprinted URL, revalidated (ETag)
        under any other; gzipped for a browser that takes it."""
        found = assets.asset(unquote(name))
        if found is None:
            return await respond(send, 404, b"not found", [(b"content-type", b"text/plain")])
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        current = query.get("v", [""])[0] == found.fingerprint
        headers = [(b"content-type", found.content_type.encode()),
                   (b"etag", found.etag.encode()), (b"vary", b"accept-encoding"),
                   FOREVER if current else REVALIDATE]
        if text_header(scope, b"if-none-match") == found.etag:
            return await respond(send, 304, b"", headers)
        body = found.body
        if found.gzipped is not None and accepts_gzip(text_header(scope, b"accept-encoding")):
            body = found.gzipped
            headers.append((b"content-encoding", b"gzip"))
        await respond(send, 200, body, headers)


# -- small HTTP helpers ---------------------------------------------------------------

def cookies(scope: Scope) -> dict[str, str]:
    raw = header(scope, b"cookie")
    return cookie_parser(raw.decode("latin-1")) if raw else {}


def same_origin(scope: Scope) -> bool:
    """A form post is ours if the browser says so: Sec-Fetch-Site (when sent) is
    same-origin, and Origin (browsers send it on every POST) names this host."""
    site = text_header(scope, b"sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    return origin_matches(text_header(scope, b"origin"), text_header(scope, b"host"))


def text_header(scope: Scope, name: bytes) -> str | None:
    value = header(scope, name)
    return None if value is None else value.decode("latin-1")


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Accept-Encoding names gzip (or *) with a weight above 0."""
    for part in (accept_encoding or "").split(","):
        coding, *params = (piece.strip() for piece in part.split(";"))
        if coding.lower() not in ("gzip", "*"):
            continue
        for param in params:
            name, _, weight = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    return float(weight) > 0
                except ValueError:
                    return False
        return True
    return False


def is_https(scope: Scope) -> bool:
    return scope.get("scheme") == "https"


def set_cookie(name: str, value: str, max_age: int, secure: bool = False) -> tuple[bytes, bytes]:
    attrs = f"{name}={value}; Path={PREFIX}; Max-Age={max_age}; HttpOnly; SameSite=Strict"
    if secure:
        attrs += "; Secure"
    return (b"set-cookie", attrs.encode())


async def read_form(scope: Scope, receive: Receive) -> dict[str, str]:
    try:
        body = await read_body(scope, receive, FORM_LIMIT)
    except PayloadTooLarge:
        return {}  # no form of ours is that big: the CSRF check refuses it
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


async def respond(send: Send, status: int, body: bytes,
                  headers: list[tuple[bytes, bytes]]) -> None:
    if status != 304:  # a 304's length would be the unsent file's
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def html(send: Send, status: int, page: str,
               headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await respond(send, status, page.encode(), [HTML, NO_STORE, *(headers or [])])


async def redirect(send: Send, location: str,
                   headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await respond(send, 303, b"", [(b"location", location.encode()), NO_STORE,
                                   *(headers or [])])


async def json_error(send: Send, status: int, info: ErrorInfo) -> None:
    await respond(send, status, error_body(info),
                  [(b"content-type", b"application/json"), NO_STORE])
