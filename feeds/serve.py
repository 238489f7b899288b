"""``feeds serve``: ``out/`` over HTTP with the right types and caching, the one-click
unsubscribe endpoint (RFC 8058) and the sign-up pages (:mod:`feeds.pages`), every response
with the security headers of :mod:`feeds.websecurity`.

Starlette does the HTTP; we only choose types, headers and what is private. ETag and
Last-Modified come from each file's size and mtime, and since unchanged feeds are never
rewritten, a feed reader's conditional request gets 304 until a feed really changes.
"""

from __future__ import annotations

import gzip
import logging
import mimetypes
import os
import socket
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, quote

from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from feeds import state
from feeds.api import digest_secret
from feeds.api.preferences import TopicChoices
from feeds.config import Config
from feeds.digest import token_subscriber, verify_token
from feeds.errors import AddressInUse, OutputFolderError, ServerStopped
from feeds.forms import FORM_TYPES, form_type, read_form
from feeds.pages import Pages, PreferencesPages, SignupPages
from feeds.pages import routes as signup_routes
from feeds.render import jinja_env
from feeds.websecurity import SecurityHeaders

log = logging.getLogger(__name__)

MEDIA_TYPES = {  # by file name first, then by suffix
    "rss.xml": "application/rss+xml; charset=utf-8",
    "atom.xml": "application/atom+xml; charset=utf-8",
    "feed.json": "application/feed+json; charset=utf-8",
    ".opml": "text/x-opml; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".xml": "application/xml; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".gz": "application/gzip",
}
PRIVATE = ("outbox",)  # .eml files carry personal unsubscribe links: never served
ENCODINGS = (("br", ".br"), ("gzip", ".gz"))  # the server's preference, best first
MIN_GZIP = 500  # smaller bodies are sent as they are: gzip would save nothing worth a header
CACHED_FILE = 4 << 20  # bodies up to this size are kept in memory, keyed by size and mtime
CACHE_BYTES = 64 << 20


class Representation(NamedTuple):
    """One body of a file as sent: its bytes, its encoding (None: identity) and the
    ETag that names exactly these bytes."""

    body: bytes
    encoding: str | None
    etag: str


class OutFiles:
    """``out/`` over HTTP (an ASGI app): feed media types, cache headers, private parts
    hidden, and the compressed copies that the build wrote beside each file (``.br``,
    ``.gz``) sent as they are. A file without a copy is gzipped here, once per version.

    Each version of a file (path, size, mtime, inode) is read once and kept in memory,
    so a request costs one ``stat`` and no thread: this is what makes ``feeds serve``
    answer several times the requests of ``python -m http.server``. Each body has its
    own strong ETag (the identity one, with ``-gzip``/``-br`` for the others), every
    compressible response says ``Vary: Accept-Encoding`` (304s too), and a Range that
    cannot be honoured is ignored (the whole body, 200), as RFC 9110 section 14.2
    allows."""

    def __init__(self, *, directory: Path, cache_seconds: int) -> None:
        self.directory = os.path.realpath(directory)
        self.cache_control = f"public, max-age={cache_seconds}".encode()
        self._cache: dict[tuple[str, int, int, int], bytes] = {}
        self._cached_bytes = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await _send(send, 405, [(b"allow", b"GET, HEAD")], b"Method Not Allowed", method)
            return
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        found = self.lookup(path)
        if found is None:
            await _send(send, 404, [], b"Not Found", method)
            return
        full, info = found
        if stat.S_ISDIR(info.st_mode):
            # A folder is its index.html, at a URL that ends in / so relative links work.
            await _send(send, 307, [(b"location", _quote(scope, path + "/"))], b"", method)
            return
        await self.send_file(scope, send, full, info)

    def lookup(self, path: str) -> tuple[str, os.stat_result] | None:
        """The file (or folder to redirect) that ``path`` names; None for anything not
        served: private parts, dotfiles, paths that leave ``out/``, and folders without
        an index.html."""
        parts = [part for part in path.split("/") if part]
        if any(part.startswith(".") or "\0" in part for part in parts) or (parts and parts[0] in PRIVATE):
            return None
        full = os.path.join(self.directory, *parts)
        try:
            info = os.stat(full)
            if stat.S_ISDIR(info.st_mode):
                if path and not path.endswith("/"):
                    return full, info
                full = os.path.join(full, "index.html")
                info = os.stat(full)
        except (OSError, ValueError):
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        real = os.path.realpath(full)  # a symlink out of out/ is not followed
        if not real.startswith(self.directory + os.sep):
            return None
        return full, info

    async def send_file(self, scope: Scope, send: Send, full: str, info: os.stat_result) -> None:
        name = os.path.basename(full)
        media_type = MEDIA_TYPES.get(name) or MEDIA_TYPES.get(os.path.splitext(name)[1]) \
            or mimetypes.guess_type(name)[0] or "application/octet-stream"
        compressible = media_type.startswith("text/") or "xml" in media_type or "json" in media_type
        headers = Headers(scope=scope)
        accepted = _accepted_encodings(headers.get("accept-encoding", "")) if compressible else set()
        chosen = self.representation(full, info, accepted)
        last_modified = formatdate(info.st_mtime, usegmt=True)
        response_headers = [
            (b"content-type", media_type.encode()),
            (b"cache-control", self.cache_control),
            (b"etag", chosen.etag.encode()),
            (b"last-modified", last_modified.encode()),
            (b"accept-ranges", b"bytes" if chosen.encoding is None else b"none"),
        ]
        if compressible:
            response_headers.append((b"vary", b"Accept-Encoding"))
        if _not_modified(headers, chosen.etag, info.st_mtime):
            await _send(send, 304, [h for h in response_headers if h[0] != b"content-type"], b"", "HEAD")
            return
        if chosen.encoding is not None:
            response_headers.append((b"content-encoding", chosen.encoding.encode()))
        body, status = chosen.body, 200
        span = _byte_range(headers, chosen, last_modified) if chosen.encoding is None else None
        if span is not None:
            start, end = span
            if start >= len(body):
                await _send(send, 416, [(b"content-range", f"bytes */{len(body)}".encode())], b"", scope["method"])
                return
            response_headers.append((b"content-range", f"bytes {start}-{end - 1}/{len(body)}".encode()))
            body, status = body[start:end], 206
        await _send(send, status, response_headers, body, scope["method"])

    def representation(self, full: str, info: os.stat_result, accepted: set[str]) -> Representation:
        """The body to send: the best precompressed copy the client accepts, else the
        file gzipped here if the client takes gzip and it is worth it, else the file."""
        etag = f"{info.st_mtime_ns:x}-{info.st_size:x}"
        for encoding, suffix in ENCODINGS:
            if encoding not in accepted:
                continue
            try:
                copy = os.stat(full + suffix)
            except OSError:
                continue
            if stat.S_ISREG(copy.st_mode) and copy.st_mtime_ns >= info.st_mtime_ns:  # else stale: not ours to trust
                return Representation(self.read(full + suffix, copy), encoding, f'"{etag}-{encoding}"')
        body = self.read(full, info)
        if "gzip" in accepted and len(body) >= MIN_GZIP:
            return Representation(self.gzipped(full, info, body), "gzip", f'"{etag}-gzip"')
        return Representation(body, None, f'"{etag}"')

    def read(self, full: str, info: os.stat_result) -> bytes:
        key = (full, info.st_size, info.st_mtime_ns, info.st_ino)
        body = self._cache.get(key)
        if body is None:
            with open(full, "rb") as f:
                body = f.read()
            self._remember(key, body)
        return body

    def gzipped(self, full: str, info: os.stat_result, body: bytes) -> bytes:
        key = (full + "\0gzip", info.st_size, info.st_mtime_ns, info.st_ino)
        zipped = self._cache.get(key)
        if zipped is None:
            zipped = gzip.compress(body, compresslevel=6, mtime=0)
            self._remember(key, zipped)
        return zipped

    def _remember(self, key: tuple[str, int, int, int], body: bytes) -> None:
        if len(body) > CACHED_FILE:
            return
        while self._cached_bytes + len(body) > CACHE_BYTES and self._cache:  # oldest first
            oldest = next(iter(self._cache))
            self._cached_bytes -= len(self._cache.pop(oldest))
        self._cache[key] = body
        self._cached_bytes += len(body)


def _accepted_encodings(header: str) -> set[str]:
    """The codings an Accept-Encoding header accepts (q=0 refuses one)."""
    accepted = set()
    for item in header.split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        q = params.strip().lower()
        if q.startswith("q=") and q[2:].strip() in ("0", "0.", "0.0", "0.00", "0.000"):
            continue
        if coding:
            accepted.add(coding)
    if "*" in accepted:
        accepted.update(("gzip", "br"))
    return accepted


def _not_modified(headers: Headers, etag: str, mtime: float) -> bool:
    """RFC 9110 section 13.1: If-None-Match (weak comparison) wins over If-Modified-Since."""
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
        return "*" in tags or etag in tags
    since = headers.get("if-modified-since")
    if since:
        try:
            return parsedate_to_datetime(since).timestamp() >= int(mtime)
        except (TypeError, ValueError, IndexError, OverflowError):
            return False
    return False


def _byte_range(headers: Headers, chosen: Representation, last_modified: str) -> tuple[int, int] | None:
    """The one byte range asked for, as (start, end); None to send the whole body: no
    Range, an If-Range that no longer matches, several ranges, or a Range we cannot read
    (RFC 9110 section 14.2: a server MAY ignore a Range; a 400 would break a client that
    only meant to resume). A range that starts past the end is kept, for a 416."""
    value = headers.get("range")
    if not value:
        return None
    if_range = headers.get("if-range")
    if if_range is not None and if_range not in (chosen.etag, last_modified):
        return None
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    size = len(chosen.body)
    try:
        if not dash:
            return None
        if not first:  # the last N bytes
            count = int(last)
            return (max(size - count, 0), size) if count > 0 and size else None
        start = int(first)
        end = int(last) + 1 if last else None
    except ValueError:
        return None
    if start < 0 or (end is not None and end <= start):
        return None
    return start, min(size if end is None else end, size)


def _quote(scope: Scope, path: str) -> bytes:
    root: str = scope.get("root_path", "")
    query = scope.get("query_string", b"")
    return (quote(root + path) + ("?" + query.decode("latin-1") if query else "")).encode("latin-1")


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes, method: str) -> None:
    """One whole response. HEAD gets the headers of the GET, Content-Length included."""
    length = [(b"content-length", str(len(body)).encode())] if status != 304 else []
    if status >= 400 or status == 307:
        headers = [*headers, (b"content-type", b"text/plain; charset=utf-8")]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, *length]})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


async def one_click_values(request: Request) -> list[str]:
    """The ``List-Unsubscribe`` values of a one-click POST. RFC 8058 section 3.1: the body
    SHOULD be multipart/form-data and MAY be urlencoded (both read by :func:`read_form`,
    with its limits); a body with no (or another) type is read as urlencoded, as the old
    endpoint did."""
    if form_type(request) in FORM_TYPES:
        form = await read_form(request)
        return (form or {}).get("List-Unsubscribe", [])
    body = await request.body()
    return parse_qs(body[:4096].decode("utf-8", "replace")).get("List-Unsubscribe", [])


def create_app(config: Config, engine: Engine | None = None) -> ASGIApp:
    engine = engine or state.open_state(config.state_db)
    secret = digest_secret(config, engine)
    env = jinja_env()

    pages = Pages(config, env)

    def page(status: int, **context: Any) -> HTMLResponse:
        return pages.render("unsubscribe.html", status, **context)

    async def unsubscribe(request: Request) -> Response:
        token = request.query_params.get("token", "")
        subscriber_id = token_subscriber(token)
        if subscriber_id is None:
            log.info("unsubscribe refused", extra={"reason": "malformed token"})
            return page(400, step="invalid", heading="This link is not valid",
                        message="The unsubscribe link is incomplete. Use the link in the footer of a digest.")
        person = state.get_subscriber(engine, subscriber_id)
        if person is None or not verify_token(secret, token, person.id, person.email):
            log.warning("unsubscribe refused", extra={"reason": "bad signature", "subscriber": subscriber_id})
            return page(403, step="invalid", heading="This link is not valid",
                        message="This unsubscribe link was not issued by us, or its subscription no longer exists.")
        if request.method != "POST":
            # RFC 8058: only a POST unsubscribes; a GET must not, as mail scanners follow links.
            # Starlette answers HEAD with this GET handler, and a HEAD may carry a body
            # (`curl -X HEAD -d List-Unsubscribe=One-Click`): ask for POST, not "not GET".
            if person.status not in (state.ACTIVE, state.PAUSED):  # a paused subscriber may still leave
                return page(200, step="done", heading="You are unsubscribed", email=person.email)
            return page(200, step="confirm", heading="Unsubscribe", email=person.email, cadence=person.cadence)
        values = await one_click_values(request)  # [] for a malformed body
        if values != ["One-Click"]:
            return page(400, step="invalid", heading="Nothing was changed",
                        message="An unsubscribe request must carry List-Unsubscribe=One-Click.")
        if state.unsubscribe(engine, person.id, datetime.now(UTC)):
            log.info("unsubscribed", extra={"subscriber": person.id})
        return page(200, step="done", heading="You are unsubscribed", email=person.email)

    topics = TopicChoices(config.out)  # the sign-up and preferences pages offer the same list
    app = Starlette(
        routes=[
            Route("/unsubscribe", unsubscribe, methods=["GET", "POST"]),
            Route("/preferences", PreferencesPages(config, engine, secret, pages, topics).preferences,
                  methods=["GET", "POST"]),
            *signup_routes(SignupPages(config, engine, secret, pages, topics)),
            Mount("/", OutFiles(directory=config.out, cache_seconds=config.serve.cache_seconds)),
        ],
    )
    # Outside Starlette's own error handling, so that its 500 page has the headers too.
    return SecurityHeaders(app)


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` and listening, or AddressInUse naming them.

    Bound here, before anything is claimed or announced, and handed to uvicorn: a port
    that is taken fails the command at once, with no window in which another process could
    take it between a check and uvicorn's own bind."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as e:
        raise AddressInUse(host, port, f"not an address: {getattr(e, 'strerror', None) or e}") from e
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restart at once
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise AddressInUse(host, port, e.strerror or str(e)) from e
    sock.set_inheritable(True)
    return sock


def check_out(out: Path) -> None:
    """``out`` must be a folder, or not yet exist (the first build makes it)."""
    if out.exists() and not out.is_dir():
        raise OutputFolderError(out, "not a folder: the output folder cannot be served")


def server(config: Config, engine: Engine | None = None) -> Any:
    """A uvicorn server for the app, to be run on a socket from :func:`listen`."""
    import uvicorn

    settings = uvicorn.Config(create_app(config, engine), host=config.serve.host, port=config.serve.port,
                              log_config=None, access_log=False, lifespan="off")
    return uvicorn.Server(settings)


def serve(config: Config, sock: socket.socket, listening: Callable[[], None] = lambda: None) -> None:
    """Serve on ``sock`` until interrupted (``feeds serve``). The app, and so the state
    database, is opened before ``listening()`` announces anything. Raises ServerStopped if
    the server stops by itself (it did not start)."""
    import asyncio

    running = server(config)
    listening()
    log.info("serving", extra={"url": f"http://{config.serve.host}:{config.serve.port}/", "folder": str(config.out)})
    asyncio.run(running.serve(sockets=[sock]))
    if not running.started:
        raise ServerStopped(config.serve.host, config.serve.port)
