"""The web security of ``feeds serve``: headers on every response, a same-origin check and
CSRF tokens for every form, the client's address, and rate limits.

**CSRF, as decided for issue 14.** The index page is a static file written by the build, so
it cannot carry a per-visitor token; the forms the server renders (sign-up, confirm,
preferences) can. A POST is accepted only with evidence that it comes from our own pages
(OWASP's CSRF cheat sheet, "Fetch Metadata" and "Verifying Origin With Standard Headers"):

1. ``Sec-Fetch-Site``, when the browser sends it, must be ``same-origin`` (or ``none``: the
   person typed or bookmarked it); ``cross-site`` and ``same-site`` are refused.
2. ``Origin``, when sent, must be ours: ``base_url``'s origin, or the host the request was
   made to (``Host``, which nginx passes on as the browser sent it). ``null`` is refused.
3. A form the server rendered carries a signed double-submit token (OWASP's "signed
   double-submit cookie"): a random value in a ``SameSite=Strict``, ``HttpOnly`` cookie,
   and its HMAC with the state secret in a hidden field. A token that is there must match.
4. And there must be positive evidence: a same-origin header from 1 or 2, or a good token.
   A request with neither headers nor token (a browser too old to send ``Origin`` on a
   POST, or a script) is refused.

So the static index page's form works in every current browser (all send ``Origin`` on a
POST), a page rendered by the server is protected twice, and no cross-site page can make a
visitor's browser sign anyone up. The preferences and confirm forms also carry their own
signed token (the link's), which an attacker cannot forge.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from base64 import b64encode
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Every response: no sniffing of types, no framing (clickjacking), no Referer to other sites
# (links carry tokens: a confirm or unsubscribe page must not leak its URL to the next site),
# its own browsing context group, and no powerful features. Not "no-referrer": under it a
# browser sends "Origin: null" with a form's POST (Fetch, "serializing a request origin"),
# and the same-origin check below could not tell our own form from a sandboxed stranger.
COMMON_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
)
# Files of out/ (feeds, the index page, digests' web copies): no script at all. Styles may be
# inline there: the index page has a <style> and the web copies are MJML's output, full of
# style attributes, which no hash can allow. Images come from the records' sites.
STATIC_POLICY = ("default-src 'none'; img-src * data:; style-src 'unsafe-inline'; form-action 'self'; "
                 "frame-ancestors 'none'; base-uri 'none'")


def page_policy(style: str) -> str:
    """The Content-Security-Policy of a page the server renders: nothing but its own one
    stylesheet (by hash: ``style`` is the text of its ``<style>`` element), its own images
    and forms that post to itself. No script of any kind."""
    digest = b64encode(hashlib.sha256(style.encode()).digest()).decode()
    return (f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'self'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'")


class SecurityHeaders:
    """ASGI middleware: :data:`COMMON_HEADERS` on every response, and
    :data:`STATIC_POLICY` on those that set no Content-Security-Policy of their own.
    (Kept lean: it is on the path of every feed a reader polls. The app's own responses
    never set the common headers themselves, so they are appended without a check.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers") or []
                if any(name == b"content-security-policy" for name, _ in headers):
                    message["headers"] = [*headers, *COMMON_HEADERS]
                else:
                    message["headers"] = [*headers, *_STATIC_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


_STATIC_HEADERS = (*COMMON_HEADERS, (b"content-security-policy", STATIC_POLICY.encode()))


# ---------------------------------------------------------------------------- CSRF

CSRF_COOKIE = "feeds_csrf"
CSRF_FIELD = "csrf"


@dataclass(frozen=True)
class Csrf:
    """Signed double-submit tokens (see the module's doc) for one site."""

    secret: str
    base_url: str

    def field_for(self, cookie: str) -> str:
        return hmac.new(self.secret.encode(), f"csrf:{cookie}".encode(), hashlib.sha256).hexdigest()[:32]

    def cookie_of(self, request: Request) -> str:
        """The visitor's cookie value, or a new one (then :meth:`set_cookie` must send it)."""
        value = request.cookies.get(CSRF_COOKIE, "")
        return value if len(value) == 32 and value.isalnum() else secrets.token_hex(16)

    def set_cookie(self, response: Response, cookie: str) -> None:
        url = urlsplit(self.base_url)
        response.set_cookie(CSRF_COOKIE, cookie, httponly=True, samesite="strict", path=url.path or "/",
                            secure=url.scheme == "https")

    def token_ok(self, request: Request, field: str) -> bool:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        return bool(cookie) and hmac.compare_digest(field, self.field_for(cookie))

    def allows(self, request: Request, form: Mapping[str, Sequence[str]]) -> bool:
        """Whether a POST may be acted on (the four rules of the module's doc)."""
        fetch_site = request.headers.get("sec-fetch-site")
        if fetch_site is not None and fetch_site not in ("same-origin", "none"):
            return False
        origin = request.headers.get("origin")
        if origin is not None and not self.our_origin(origin, request.headers.get("host", "")):
            return False
        field = (form.get(CSRF_FIELD) or [""])[0]
        if field:
            return self.token_ok(request, field)
        return fetch_site == "same-origin" or origin is not None


    def our_origin(self, origin: str, host: str) -> bool:
        """``base_url``'s origin, or the host the browser sent the request to."""
        ours = urlsplit(self.base_url)
        if origin == f"{ours.scheme}://{ours.netloc}":
            return True
        given = urlsplit(origin)
        return bool(host) and given.scheme in ("http", "https") and given.netloc.lower() == host.lower()


def same_origin(request: Request, base_url: str) -> bool:
    """The same-origin check alone (rules 1, 2 and 4 of the module's doc), for a form whose
    own signed token stands for the CSRF token, such as the preferences page's."""
    return Csrf("", base_url).allows(request, {})


# ----------------------------------------------------------------- who is asking


def client_address(request: Request) -> str:
    """The client's IP address. Behind a proxy on the same machine (nginx on loopback, as
    deploy/nginx/feeds.conf runs it), the last address in X-Forwarded-For: the one nginx
    saw and appended; any before it were sent by the client and prove nothing. A direct
    client's X-Forwarded-For is ignored, so nobody can choose their own address."""
    peer = request.client.host if request.client else ""
    try:
        loopback = ipaddress.ip_address(peer).is_loopback
    except ValueError:
        loopback = False
    forwarded = request.headers.get("x-forwarded-for", "")
    if loopback and forwarded:
        last = forwarded.rsplit(",", 1)[-1].strip()
        try:
            return str(ipaddress.ip_address(last))
        except ValueError:
            return peer
    return peer or "unknown"


def client_key(address: str) -> str:
    """Whom a rate limit counts: an IPv4 address as it is, an IPv6 one by its /64. One
    client holds a whole /64 and may use any address in it (RFC 4291 interface identifiers,
    RFC 8981 temporary addresses): counted per address, it would never be limited."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:192.0.2.1 is the IPv4 client 192.0.2.1
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class RateLimits:
    """Sign-up requests per client address and per e-mail address, counted by the
    ``limits`` library in a moving window, in memory or in a shared storage (redis://)."""

    def __init__(self, per_ip: str, per_email: str, storage_uri: str) -> None:
        from limits import parse
        from limits.storage import storage_from_string
        from limits.strategies import MovingWindowRateLimiter

        self.limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))
        self.per_ip, self.per_email = parse(per_ip), parse(per_email)

    def hit_ip(self, address: str) -> bool:
        """Count one request from ``address`` (see :func:`client_key`); False once it is
        over its limit."""
        return self.limiter.hit(self.per_ip, "signup-ip", client_key(address))

    def hit_email(self, email: str) -> bool:
        return self.limiter.hit(self.per_email, "signup-email", email)
