"""The pages ``feeds serve`` renders itself: sign-up (``/subscribe``, ``/subscribe/<topic>``),
its confirmation (``/confirm``) and the preferences page (``/preferences``), on the shared
base ``templates/page.html``.

Thin over :mod:`feeds.api.signup`: a handler checks the request (same origin and CSRF,
rate limits, the honeypot, the form), calls the library and renders a page. What a
sign-up did is never shown: every usable form gets the same "check your inbox" page, the
sign-up itself runs after the response is sent (so that its time tells nothing either),
and a form with a filled honeypot gets that page too, with nothing stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import jinja2
from limits.errors import ConfigurationError as LimitsConfigurationError
from sqlalchemy.engine import Engine
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from feeds.api import preferences as prefs
from feeds.api import signup
from feeds.api.digests import preferences_url
from feeds.api.preferences import TopicChoices
from feeds.config import Config
from feeds.digest import preferences_token
from feeds.errors import ConfigError
from feeds.forms import Form, first, read_form
from feeds.signup import SignUpForm
from feeds.websecurity import Csrf, RateLimits, client_address, page_policy, same_origin

log = logging.getLogger(__name__)

HONEYPOT = "website"  # a field people never see; bots that fill every field fill it


class Pages:
    """Renders a page on the base template with the headers every rendered page has: its
    own Content-Security-Policy (the base's style by hash, no script) and no caching."""

    def __init__(self, config: Config, env: jinja2.Environment) -> None:
        self.config, self.env = config, env

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        style = self.env.get_template("page.css").render()
        body = self.env.get_template(template).render(
            site_title=self.config.title, language=self.config.language, home=self.config.base_url, **context)
        return HTMLResponse(body, status_code=status, headers={
            "cache-control": "no-store", "content-security-policy": page_policy(style)})


class SignupPages:
    """The handlers of the sign-up routes (see :func:`routes`)."""

    def __init__(self, config: Config, engine: Engine, secret: str, pages: Pages, choices: TopicChoices,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config, self.engine, self.pages, self.choices, self.now = config, engine, pages, choices, now
        self.csrf = Csrf(secret, config.base_url)
        s = config.signup
        try:
            self.limits = RateLimits(s.rate_per_ip, s.rate_per_email, s.rate_limit_storage)
        except LimitsConfigurationError as e:  # redis:// without the redis package, an unknown scheme
            raise ConfigError(config.source, f"signup.rate_limit_storage: {e}", key="signup") from e
        self.root = urlsplit(config.base_url).path or "/"  # forms post here, whatever host serves them

    def topics(self) -> dict[str, str]:
        """The topics of the last build (shared with the preferences page)."""
        return self.choices.get()[0]

    def form_page(self, request: Request, form: SignUpForm, *, status: int = 200, errors: dict[str, str] | None = None,
                  page_topic: str | None = None) -> Response:
        topics = self.topics()
        heading = f"Subscribe to {topics[page_topic]}" if page_topic in topics else f"Subscribe to {self.config.title}"
        cookie = self.csrf.cookie_of(request)
        response = self.pages.render(
            "subscribe.html", status, step="form", heading=heading, form=form, errors=errors or {},
            topics=list(topics.items()), csrf=self.csrf.field_for(cookie), action=self.root + "subscribe",
            page_topic=page_topic or "")
        self.csrf.set_cookie(response, cookie)
        return response

    def message(self, status: int, heading: str, message: str) -> Response:
        return self.pages.render("subscribe.html", status, step="message", heading=heading, message=message)

    async def subscribe_page(self, request: Request) -> Response:
        """GET /subscribe and /subscribe/<topic>: the form, the topic ticked."""
        slug = request.path_params.get("topic")
        if slug is not None and slug not in self.topics():
            return self.message(404, "No such topic", "There is no topic here by that name.")
        return self.form_page(request, SignUpForm(topics=(slug,) if slug else ()), page_topic=slug)

    async def subscribe(self, request: Request) -> Response:
        """POST /subscribe: check, count, and answer "check your inbox" whatever the address."""
        form_data = await read_form(request)
        if form_data is None or not self.csrf.allows(request, form_data):
            log.info("sign-up refused", extra={"reason": "not from our own page"})
            return self.message(403, "Nothing was sent",
                                "This form did not come from our own page. Open the sign-up page and try again.")
        if not self.limits.hit_ip(client_address(request)):
            return self.limited()
        form = SignUpForm(email=first(form_data, "email")[:320], topics=tuple(form_data.get("topics", ()))[:100],
                          cadence=first(form_data, "cadence") or "daily")
        if first(form_data, HONEYPOT):
            log.info("sign-up ignored", extra={"reason": "honeypot"})
            return self.sent(form.email)
        address, slugs, errors = signup.check_form(form, self.topics())
        if errors:
            page = first(form_data, "page")
            return self.form_page(request, form, status=400, errors=errors, page_topic=page or None)
        if not self.limits.hit_email(address):
            return self.limited()
        task = BackgroundTask(self.sign_up, address, slugs, form.cadence)
        response = self.sent(form.email)
        response.background = task
        return response

    def sign_up(self, address: str, slugs: tuple[str, ...], cadence: str) -> None:
        """After the response: record the request and mail the link (or not; see api.signup)."""
        try:
            done = signup.sign_up(self.config, self.engine, address, slugs, cadence, self.now())
        except Exception:  # the reader has their page; the operator gets the log
            log.exception("sign-up failed")
            return
        log.info("sign-up", extra={"outcome": done.outcome})

    def sent(self, email: str) -> Response:
        return self.pages.render("subscribe.html", step="sent", heading="Check your inbox", email=email,
                                 hours=f"{self.config.signup.confirm_within_hours:g}")

    def limited(self) -> Response:
        response = self.message(429, "Too many sign-ups", "There have been too many sign-ups from here or for "
                                "this address. Please try again in an hour.")
        response.headers["retry-after"] = "3600"
        return response

    async def confirm_page(self, request: Request) -> Response:
        """GET /confirm?token=: what the link would confirm, and a Confirm button. Nothing
        changes on a GET: mail scanners follow links."""
        token = request.query_params.get("token", "")
        found = await run_in_threadpool(signup.pending, self.config, self.engine, token, self.now())
        if found is None:
            return self.invalid()
        if found.subscriber.status in signup.RECEIVING:  # confirmed already (or paused since)
            return self.done(found)
        cookie = self.csrf.cookie_of(request)
        topics = self.topics()
        response = self.pages.render(
            "confirm.html", step="confirm", heading="Confirm your subscription", email=found.subscriber.email,
            cadence=found.cadence, topics=[topics.get(t, t) for t in found.topics], token=token,
            csrf=self.csrf.field_for(cookie), action=self.root + "confirm")
        self.csrf.set_cookie(response, cookie)
        return response

    async def confirm(self, request: Request) -> Response:
        """POST /confirm: the only request that confirms."""
        form_data = await read_form(request)
        if form_data is None or not self.csrf.allows(request, form_data):
            return self.message(403, "Nothing was changed",
                                "This form did not come from our own page. Open the link in the mail again.")
        found = await run_in_threadpool(signup.confirm, self.config, self.engine, first(form_data, "token"),
                                        self.now())
        return self.invalid() if found is None else self.done(found)

    def done(self, found: signup.Pending) -> Response:
        return self.pages.render("confirm.html", step="done", heading="You are subscribed",
                                 email=found.subscriber.email, cadence=found.cadence,
                                 preferences_url=preferences_url(self.config, preferences_token(
                                     self.csrf.secret, found.subscriber.id, found.subscriber.email)))

    def invalid(self) -> Response:
        return self.pages.render(
            "confirm.html", 400, step="invalid", heading="This link is not valid",
            message="This confirmation link has expired, was replaced by a newer one, or was not issued by us. "
                    "Sign up again to get a new one.")


class PreferencesPages:
    """The handler of ``/preferences`` (GET shows, POST changes), thin over
    :mod:`feeds.api.preferences`. The token is the login and, being unforgeable, the CSRF
    defence too; the same-origin check comes first all the same."""

    def __init__(self, config: Config, engine: Engine, secret: str, pages: Pages, choices: TopicChoices,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config, self.engine, self.secret, self.pages, self.choices = config, engine, secret, pages, choices
        self.now, self.zone = now, ZoneInfo(config.timezone)

    def page(self, status: int, heading: str, **context: Any) -> HTMLResponse:
        return self.pages.render("preferences.html", status, heading=heading,
                                 **{"step": "page", "notice": None, **context})

    def invalid(self, status: int, heading: str, message: str) -> HTMLResponse:
        return self.page(status, heading, step="invalid", message=message)

    async def preferences(self, request: Request) -> Response:
        """GET /preferences?token= and POST /preferences (the form, carrying the token)."""
        form: Form = {}
        if request.method == "POST":
            if not same_origin(request, self.config.base_url):
                log.warning("preferences refused", extra={"reason": "cross-site form"})
                return self.invalid(403, "Nothing was changed", "This form was sent from another site.")
            read = await read_form(request)
            if read is None:  # not a form, a file, too big: the same limits as every form here
                log.info("preferences refused", extra={"reason": "unreadable form"})
                return self.invalid(400, "Nothing was changed",
                                    "This form could not be read. Open the preferences link again.")
            form = read
        token = (form.get("token") or [request.query_params.get("token", "")])[0]
        return await run_in_threadpool(self.answer, request.method == "POST", token, form)

    def answer(self, posted: bool, token: str, form: Form) -> Response:
        """The page for ``token``'s holder: shown, or after doing what ``form`` asks."""
        person = prefs.token_holder(self.engine, self.secret, token)
        if person is None:
            log.info("preferences refused", extra={"reason": "bad token"})
            return self.invalid(403 if token else 400, "This link is not valid",
                                "Use the preferences link at the foot of a digest.")
        known, names = self.choices.get()
        if not known:  # no build has published a topic yet: nothing to choose from
            log.error("preferences unavailable", extra={"reason": f"no topics in {self.config.out / 'feeds.opml'}"})
            return self.invalid(503, "Preferences are unavailable",
                                "The list of topics cannot be read just now. Please try again later.")
        now = self.now()
        today = now.astimezone(self.zone).date()
        if posted and prefs.pressed(form) is None:
            log.info("preferences refused", extra={"reason": "unknown action"})
            return self.invalid(400, "Nothing was changed",
                                "This form asked for something the page does not offer. Open the preferences "
                                "link again.")
        if posted:
            page = prefs.submit(self.engine, person, token, form, known, names, today=today, now=now)
        else:
            page = prefs.show(self.engine, person, token, known, today=today)
        return self.page(400 if page.errors else 200, "Your digest preferences", page=page, notice=page.notice)


def routes(handlers: SignupPages) -> list[Route]:
    return [
        Route("/subscribe", handlers.subscribe_page, methods=["GET"]),
        Route("/subscribe", handlers.subscribe, methods=["POST"]),
        Route("/subscribe/{topic}", handlers.subscribe_page, methods=["GET"]),
        Route("/confirm", handlers.confirm_page, methods=["GET"]),
        Route("/confirm", handlers.confirm, methods=["POST"]),
    ]
