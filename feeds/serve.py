"""``feeds serve``: ``out/`` over HTTP with the right types and caching, and the one-click
unsubscribe endpoint (RFC 8058).

Starlette does the HTTP; we only choose types, headers and what is private. ETag and
Last-Modified come from each file's size and mtime, and since unchanged feeds are never
rewritten, a feed reader's conditional request gets 304 until a feed really changes.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from feeds import state
from feeds.api import digest_secret
from feeds.config import Config
from feeds.digest import token_subscriber, verify_token
from feeds.errors import AddressInUse, OutputFolderError, ServerStopped
from feeds.render import jinja_env

log = logging.getLogger(__name__)

MEDIA_TYPES = {  # by file name first, then by suffix
    "rss.xml": "application/rss+xml; charset=utf-8",
    "atom.xml": "application/atom+xml; charset=utf-8",
    "feed.json": "application/feed+json; charset=utf-8",
    ".opml": "text/x-opml; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".xml": "application/xml; charset=utf-8",
    ".json": "application/json; charset=utf-8",
}
PRIVATE = ("outbox/",)  # .eml files carry personal unsubscribe links: never served


class OutFiles(StaticFiles):
    """``out/`` as static files: feed media types, cache headers, private parts hidden."""

    def __init__(self, *, directory: Path, cache_seconds: int) -> None:
        super().__init__(directory=directory, html=True, check_dir=False)
        self.cache_seconds = cache_seconds

    def get_path(self, scope: Scope) -> str:
        path = super().get_path(scope)
        parts = Path(path).parts
        if any(part.startswith(".") for part in parts) or any(path.startswith(p.rstrip("/")) for p in PRIVATE):
            return "__not_served__/" + path  # resolves to nothing: 404
        return path

    def file_response(self, full_path: Any, stat_result: Any, scope: Scope, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        name = Path(full_path).name
        media_type = MEDIA_TYPES.get(name) or MEDIA_TYPES.get(Path(name).suffix)
        if media_type:
            response.headers["content-type"] = media_type
        response.headers["cache-control"] = f"public, max-age={self.cache_seconds}"
        return response


FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


async def one_click_values(request: Request) -> list[str]:
    """The ``List-Unsubscribe`` values of a one-click POST. RFC 8058 section 3.1: the body
    SHOULD be multipart/form-data and MAY be urlencoded; a body with no (or another) type
    is read as urlencoded, as the old endpoint did. Files are refused and the form is tiny,
    so a large upload cannot cost memory."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in FORM_TYPES:
        async with request.form(max_files=0, max_fields=16, max_part_size=4096) as form:
            return [value for value in form.getlist("List-Unsubscribe") if isinstance(value, str)]
    body = await request.body()
    return parse_qs(body[:4096].decode("utf-8", "replace")).get("List-Unsubscribe", [])


def create_app(config: Config, engine: Engine | None = None) -> Starlette:
    engine = engine or state.open_state(config.state_db)
    secret = digest_secret(config, engine)
    env = jinja_env()

    def page(status: int, **context: Any) -> HTMLResponse:
        body = env.get_template("unsubscribe.html").render(
            site_title=config.title, language=config.language, **context)
        return HTMLResponse(body, status_code=status, headers={"cache-control": "no-store"})

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
            if not person.active:
                return page(200, step="done", heading="You are unsubscribed", email=person.email)
            return page(200, step="confirm", heading="Unsubscribe", email=person.email, cadence=person.cadence)
        try:
            values = await one_click_values(request)
        except HTTPException:  # a malformed multipart body (Starlette's 400, made ours)
            values = []
        if values != ["One-Click"]:
            return page(400, step="invalid", heading="Nothing was changed",
                        message="An unsubscribe request must carry List-Unsubscribe=One-Click.")
        if state.unsubscribe(engine, person.id, datetime.now(UTC)):
            log.info("unsubscribed", extra={"subscriber": person.id})
        return page(200, step="done", heading="You are unsubscribed", email=person.email)

    return Starlette(
        routes=[
            Route("/unsubscribe", unsubscribe, methods=["GET", "POST"]),
            Mount("/", OutFiles(directory=config.out, cache_seconds=config.serve.cache_seconds)),
        ],
        middleware=[Middleware(GZipMiddleware, minimum_size=500)],
    )


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
