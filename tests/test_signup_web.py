"""The sign-up pages of a real `feeds serve` process, over real HTTP on loopback: the form,
its errors, the confirmation link's page and button, and every abuse issue 14 names
(same answer for every address, rate limits, honeypot, CSRF, security headers)."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import lxml.html
import pytest

from feeds import state
from feeds.config import load_config
from tests.conftest import SEEDS, run_cli
from tests.mail import free_port
from tests.test_daemon import wait_for
from tests.test_serve import SECRET, Reply, request, wait_until_serving
from tests.test_signup import link_token, read_eml

pytestmark = pytest.mark.slow  # a server process per test


@dataclass
class Server:
    base: str
    config: Path
    tmp: Path

    @property
    def origin(self) -> str:
        return self.base.rstrip("/")

    def engine(self) -> object:
        return state.open_state(load_config(self.config).state_db)

    def status(self, address: str) -> str | None:
        person = state.find_subscriber(self.engine(), address)  # type: ignore[arg-type]
        return person.status if person else None

    def post(self, path: str, fields: dict[str, object], *, headers: dict[str, str] | None = None,
             origin: bool = True) -> Reply:
        data = urlencode(fields, doseq=True).encode()
        sent = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        if origin:
            sent.setdefault("Origin", self.origin)
        return request(self.base + path, method="POST", data=data, headers=sent)

    def outbox(self, address: str) -> Path:
        return self.tmp / "out/outbox/confirmations" / f"{address.replace('@', '-at-')}.eml"


def start_server(tmp_path: Path, *extra: str) -> Iterator[Server]:
    port = free_port()
    config = tmp_path / "feeds.yaml"
    config.write_text("\n".join([
        "title: AI Digest", f"seeds: {SEEDS}", f"out: {tmp_path / 'out'}", f"state_db: {tmp_path / 'state.db'}",
        f"secret: {SECRET}", f"base_url: http://127.0.0.1:{port}/", "serve:", f"  port: {port}", *extra]) + "\n")
    assert run_cli("build", "--config", str(config), "--now", "2020-06-18T00:00:00Z").exit_code == 0
    process = subprocess.Popen([sys.executable, "-m", "feeds", "serve", "--config", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}/"

    try:
        wait_until_serving(base, process, what="feeds serve")
        yield Server(base, config, tmp_path)
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    # Limits high enough for a test's few requests; test_rate_limits_... has its own.
    yield from start_server(tmp_path, "signup:", "  rate_per_ip: 1000/hour", "  rate_per_email: 100/hour")


def sign_up_fields(address: str, topics: tuple[str, ...] = ("ai",), cadence: str = "weekly",
                   **more: str) -> dict[str, object]:
    return {"email": address, "topics": list(topics), "cadence": cadence, "website": "", **more}


def wait_for_mail(server: Server, address: str, after: float = 0.0) -> Path:
    path = server.outbox(address)
    wait_for(lambda: path.exists() and path.stat().st_mtime > after, what=f"the confirmation to {address}")
    return path


def page(reply: Reply) -> lxml.html.HtmlElement:
    return lxml.html.fromstring(reply.body)


# ------------------------------------------------------------------ the journey over HTTP


def test_sign_up_then_confirm_only_by_the_button(server: Server) -> None:
    reply = server.post("subscribe", sign_up_fields("ada@example.org", ("ai", "computer-vision")))
    assert reply.status == 200 and page(reply).findtext(".//h1") == "Check your inbox"
    token = link_token(read_eml(wait_for_mail(server, "ada@example.org")))
    assert server.status("ada@example.org") == state.UNCONFIRMED

    # A mail scanner follows the link (GET, HEAD): nothing is confirmed.
    shown = request(f"{server.base}confirm?token={token}")
    assert request(f"{server.base}confirm?token={token}", method="HEAD").status == 200
    assert shown.status == 200 and server.status("ada@example.org") == state.UNCONFIRMED
    form = page(shown).find(".//form")
    assert form.get("method") == "post" and form.get("action") == "/confirm"
    assert [li.text for li in page(shown).iterfind(".//li")] == ["AI", "Computer Vision"]
    fields = {i.get("name"): i.get("value") for i in form.iterfind(".//input")}
    assert fields["token"] == token
    cookie = SimpleCookie(shown.headers["set-cookie"])["feeds_csrf"]
    set_cookie = shown.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie

    done = server.post("confirm", fields, headers={"Cookie": f"feeds_csrf={cookie.value}"})
    assert done.status == 200 and page(done).findtext(".//h1") == "You are subscribed"
    assert server.status("ada@example.org") == state.ACTIVE
    # Its link to the preferences page works: the contract's preferences_token.
    [link] = [a.get("href") for a in page(done).iterfind(".//a") if "preferences?token=" in a.get("href")]
    preferences = request(link)
    assert preferences.status == 200 and b"ada@example.org" in preferences.body


def test_a_bad_link_gets_a_page_that_says_so(server: Server) -> None:
    for token in ("", "1.2.daily.ai.0123456789abcdef0123456789abcdef", "nonsense"):
        reply = request(f"{server.base}confirm?token={token}")
        assert reply.status == 400 and page(reply).findtext(".//h1") == "This link is not valid"


def test_errors_are_shown_beside_their_fields_with_the_values_kept(server: Server) -> None:
    reply = server.post("subscribe", {"email": "ada@", "cadence": "weekly", "website": ""})
    assert reply.status == 400
    doc = page(reply)
    assert doc.findtext(".//title").startswith("Error: ")
    email = doc.get_element_by_id("email")
    assert email.get("value") == "ada@" and email.get("aria-invalid") == "true"
    described = email.get("aria-describedby")
    assert "email address" in doc.get_element_by_id(described).text_content()
    topics = doc.xpath("//fieldset[legend='Topics']")[0]
    assert "topic" in doc.get_element_by_id(topics.get("aria-describedby")).text_content()
    assert doc.get_element_by_id("cadence-weekly").get("checked") is not None  # their choice kept
    assert "aria-invalid" not in doc.get_element_by_id("cadence-daily").attrib
    assert state.list_subscribers(server.engine()) == []  # type: ignore[arg-type]


def test_the_index_page_and_each_topic_have_a_form(server: Server) -> None:
    index = page(request(server.base))
    form = index.get_element_by_id("signup-email").getparent()
    assert form.get("action") == "subscribe" and form.get("method") == "post"
    assert {i.get("value") for i in form.xpath(".//input[@name='topics']")} >= {"ai", "all", "computer-vision"}
    assert "subscribe/ai" in [a.get("href") for a in index.iterfind(".//a")]
    topic = request(server.base + "subscribe/computer-vision")
    assert topic.status == 200 and page(topic).findtext(".//h1") == "Subscribe to Computer Vision"
    assert page(topic).get_element_by_id("topic-computer-vision").get("checked") is not None
    assert page(topic).get_element_by_id("topic-ai").get("checked") is None
    assert request(server.base + "subscribe/no-such-topic").status == 404


# ------------------------------------------------------------------------------ abuse


def test_the_answer_is_the_same_whoever_the_address_is(server: Server) -> None:
    """Byte for byte, for one address new, waiting, active, unsubscribed, bounced and
    complained: nothing tells a stranger whether it is subscribed."""
    address = "eve@example.org"
    engine = server.engine()
    replies: dict[str, Reply] = {}

    def ask(label: str, before: Callable[[], None] = lambda: None) -> None:
        before()
        replies[label] = server.post("subscribe", sign_up_fields(address))

    def set_status(status: str) -> Callable[[], None]:
        def change() -> None:
            person = state.find_subscriber(engine, address)  # type: ignore[arg-type]
            assert person is not None
            state.set_status(engine, person.id, status, source="operator", now=datetime.now(UTC))  # type: ignore[arg-type]
        return change

    ask("new")
    wait_for_mail(server, address)
    ask("unconfirmed")
    ask("active", set_status(state.ACTIVE))
    ask("unsubscribed", set_status(state.UNSUBSCRIBED))
    ask("bounced", lambda: (set_status(state.ACTIVE)(), set_status(state.BOUNCED)()))
    ask("complained", lambda: (set_status(state.ACTIVE)(), set_status(state.COMPLAINED)()))
    first = replies["new"]
    for label, reply in replies.items():
        assert reply.status == first.status == 200, label
        assert reply.body == first.body, label
        assert {k: v for k, v in reply.headers.items() if k != "date"} == \
            {k: v for k, v in first.headers.items() if k != "date"}, label


def test_a_filled_honeypot_gets_the_same_answer_and_stores_nothing(server: Server) -> None:
    normal = server.post("subscribe", sign_up_fields("bot@example.org"))
    wait_for_mail(server, "bot@example.org")
    trapped = server.post("subscribe", sign_up_fields("bot2@example.org", website="http://spam.example"))
    assert trapped.status == normal.status == 200
    assert trapped.body == normal.body.replace(b"bot@example.org", b"bot2@example.org")
    time.sleep(0.5)  # the sign-up would run after the response: give it the time it would take
    assert server.status("bot2@example.org") is None and not server.outbox("bot2@example.org").exists()


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": "https://evil.example", "Sec-Fetch-Site": "same-origin"},
])
def test_cross_site_posts_change_nothing(server: Server, headers: dict[str, str]) -> None:
    reply = server.post("subscribe", sign_up_fields("ada@example.org"), headers=headers)
    assert reply.status == 403
    time.sleep(0.3)
    assert server.status("ada@example.org") is None


def test_a_post_with_no_sign_of_its_origin_is_refused(server: Server) -> None:
    assert server.post("subscribe", sign_up_fields("ada@example.org"), origin=False).status == 403


def test_the_servers_own_form_carries_a_signed_token(server: Server) -> None:
    shown = request(server.base + "subscribe")
    cookie = SimpleCookie(shown.headers["set-cookie"])["feeds_csrf"].value
    field = page(shown).xpath("//input[@name='csrf']")[0].get("value")
    # Without Origin (an old browser), the token is the evidence; a wrong one is refused.
    wrong = server.post("subscribe", sign_up_fields("ada@example.org", csrf="0" * 32), origin=False,
                        headers={"Cookie": f"feeds_csrf={cookie}"})
    assert wrong.status == 403
    stolen = server.post("subscribe", sign_up_fields("ada@example.org", csrf=field), origin=False,
                         headers={"Cookie": "feeds_csrf=" + "1" * 32})
    assert stolen.status == 403
    good = server.post("subscribe", sign_up_fields("ada@example.org", csrf=field), origin=False,
                       headers={"Cookie": f"feeds_csrf={cookie}"})
    assert good.status == 200
    wait_for_mail(server, "ada@example.org")


def test_confirm_refuses_a_cross_site_post(server: Server) -> None:
    server.post("subscribe", sign_up_fields("ada@example.org"))
    token = link_token(read_eml(wait_for_mail(server, "ada@example.org")))
    reply = server.post("confirm", {"token": token}, headers={"Origin": "https://evil.example"})
    assert reply.status == 403 and server.status("ada@example.org") == state.UNCONFIRMED


@pytest.fixture
def strict_server(tmp_path: Path) -> Iterator[Server]:
    yield from start_server(tmp_path, "signup:", "  rate_per_ip: 4/hour", "  rate_per_email: 2/hour")


def test_rate_limits_per_client_and_per_address(strict_server: Server) -> None:
    server = strict_server
    statuses = [server.post("subscribe", sign_up_fields(f"p{i}@example.org")).status for i in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    # Behind nginx on loopback, each client is known by the address nginx appends.
    behind = [server.post("subscribe", sign_up_fields("same@example.org"),
                          headers={"X-Forwarded-For": f"198.51.100.{i}"}).status for i in range(3)]
    assert behind == [200, 200, 429]  # per address: 2 an hour, from however many clients
    limited = server.post("subscribe", sign_up_fields("p9@example.org"))
    assert limited.status == 429 and limited.headers["retry-after"] == "3600"


def test_the_limit_per_client_counts_an_ipv6_client_by_its_64_prefix(strict_server: Server) -> None:
    """One IPv6 client has a whole /64 (RFC 4291's interface identifiers, chosen at will by
    privacy addresses, RFC 8981): counted per /128, it would never reach its limit."""
    statuses = [strict_server.post("subscribe", sign_up_fields(f"v6-{i}@example.org"),
                                   headers={"X-Forwarded-For": f"2001:db8:1:2::{i:x}"}).status for i in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    other = strict_server.post("subscribe", sign_up_fields("v6-other@example.org"),
                               headers={"X-Forwarded-For": "2001:db8:1:3::1"})
    assert other.status == 200  # the next /64 is another client


# -------------------------------------------------------------------- security headers


def paths_and_methods(server: Server) -> list[tuple[str, str, Reply]]:
    person = server.post("subscribe", sign_up_fields("hdr@example.org"))
    return [
        ("index", "GET", request(server.base)),
        ("feed", "GET", request(server.base + "topics/ai/rss.xml")),
        ("opml", "GET", request(server.base + "feeds.opml")),
        ("missing", "GET", request(server.base + "nope.html")),
        ("put", "PUT", request(server.base + "subscribe", method="PUT")),
        ("subscribe", "GET", request(server.base + "subscribe")),
        ("topic", "GET", request(server.base + "subscribe/ai")),
        ("sent", "POST", person),
        ("error", "POST", server.post("subscribe", {"email": "x"})),
        ("refused", "POST", server.post("subscribe", {"email": "x"}, origin=False)),
        ("confirm", "GET", request(server.base + "confirm?token=x")),
        ("unsubscribe", "GET", request(server.base + "unsubscribe?token=x")),
    ]


def test_every_response_has_strict_security_headers(server: Server) -> None:
    for label, _method, reply in paths_and_methods(server):
        h = reply.headers
        assert h["x-content-type-options"] == "nosniff", label
        assert h["referrer-policy"] == "same-origin", label
        assert h["x-frame-options"] == "DENY", label
        policy = dict(p.strip().split(" ", 1) for p in h["content-security-policy"].split(";"))
        assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'", label
        assert "script-src" not in policy and "unsafe-inline" not in policy.get("script-src", ""), label
        assert policy["base-uri"] == "'none'" and policy["form-action"] == "'self'", label


def test_rendered_pages_allow_only_their_own_style_by_hash(server: Server) -> None:
    for path in ("subscribe", "subscribe/ai", "confirm?token=x", "unsubscribe?token=x"):
        reply = request(server.base + path)
        styles = page(reply).xpath("//style")
        assert len(styles) == 1 and not page(reply).xpath("//script|//*[@style]"), path
        digest = base64.b64encode(hashlib.sha256(styles[0].text.encode()).digest()).decode()
        assert f"style-src 'sha256-{digest}'" in reply.headers["content-security-policy"], path
        assert "unsafe-inline" not in reply.headers["content-security-policy"], path


def test_a_huge_form_is_refused_unread(server: Server) -> None:
    reply = server.post("subscribe", sign_up_fields("ada@example.org", website="", filler="x" * 100_000))
    assert reply.status == 403
    time.sleep(0.3)
    assert server.status("ada@example.org") is None


def test_a_rate_limit_storage_that_cannot_be_used_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(f"out: {tmp_path / 'out'}\nstate_db: {tmp_path / 'state.db'}\nserve:\n  port: {free_port()}\n"
                      "signup:\n  rate_limit_storage: nope://localhost\n")
    result = subprocess.run([sys.executable, "-m", "feeds", "serve", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "signup.rate_limit_storage: unknown storage scheme" in result.stderr
    assert "Traceback" not in result.stderr
