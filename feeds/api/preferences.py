"""The preferences page: a subscriber, named by the signed token in their digests, changes
their topics and cadence, pauses until a date, unsubscribes or resubscribes.

The page's logic lives here; :mod:`feeds.serve` only reads the request and renders what
:func:`show` and :func:`submit` return. The clock is an argument (``now``) and so is the
day it is where the digests are made (``today``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine

from feeds import state
from feeds.api.signup import published_topics
from feeds.api.subscribers import check_subscription
from feeds.config import CADENCES
from feeds.digest import verify_preferences_token
from feeds.errors import SubscriberError

# The buttons of the form (the name "action"; each a submit button's value).
SAVE, UNSUBSCRIBE, RESUBSCRIBE = "save", "unsubscribe", "resubscribe"
ACTIONS = (SAVE, UNSUBSCRIBE, RESUBSCRIBE)
# Unsubscribed by these, a person may resubscribe on the page: they left by their own act.
# Left any other way (the operator, a bounce, a complaint), only the operator brings them back.
OWN_LEAVING = frozenset({"one-click", "mailto", "preferences"})
ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)  # YYYY-MM-DD, as <input type="date"> sends it
LONGEST_PAUSE = timedelta(days=366)  # a pause, not a quiet way to leave for ever


@dataclass(frozen=True, slots=True)
class Choices:
    """What the form sets: topic slugs, cadence, and the day digests resume (None: not paused)."""

    topics: tuple[str, ...]
    cadence: str
    paused_until: date | None = None


@dataclass(frozen=True)
class Page:
    """Everything the preferences page shows. ``errors`` maps a field's name to what is
    wrong with it (the form shows it beside the field); ``notice`` says what was just done."""

    person: state.Subscriber
    token: str
    topics: Mapping[str, str]  # slug -> name of every topic the site has, "all" first
    cadences: tuple[str, ...]
    choices: Choices
    today: date
    can_resubscribe: bool = False
    notice: str | None = None
    errors: Mapping[str, str] = field(default_factory=dict)
    pause_text: str = ""  # the pause date as typed, when it was refused

    @property
    def receiving(self) -> bool:
        """Active or paused: the form's subject. Anyone else has left, or is not yet in."""
        return self.person.status in (state.ACTIVE, state.PAUSED)

    @property
    def earliest_pause(self) -> date:
        return self.today + timedelta(days=1)

    @property
    def latest_pause(self) -> date:
        return self.today + LONGEST_PAUSE


class TopicChoices:
    """The topics the site publishes, for the sign-up and the preferences pages alike (so
    the two never offer different lists): the last build's ``feeds.opml``, read again only
    when a build rewrote it (one stat per request), never the corpus."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._built: object = object()  # the file's identity when the topics were read
        self._topics: dict[str, str] = {}
        self._names: dict[str, str] = {}

    def get(self) -> tuple[dict[str, str], dict[str, str]]:
        """(slug -> name, ``all`` first; casefolded name -> slug). Empty before the first build."""
        try:
            info = os.stat(self.out / "feeds.opml")
            built: object = (info.st_mtime_ns, info.st_size, info.st_ino)
        except OSError:
            built = None
        if built != self._built:
            self._topics = published_topics(self.out)
            self._names = {name.casefold(): slug for slug, name in self._topics.items()}
            self._built = built
        return self._topics, self._names


def token_holder(engine: Engine, secret: str, token: str) -> state.Subscriber | None:
    """The subscriber a genuine preferences token names; None for any other token."""
    def email_of(subscriber_id: int) -> str | None:
        person = state.get_subscriber(engine, subscriber_id)
        return person.email if person else None

    subscriber_id = verify_preferences_token(secret, token, email_of)
    return state.get_subscriber(engine, subscriber_id) if subscriber_id is not None else None


def may_resubscribe(engine: Engine, person: state.Subscriber) -> bool:
    """Whether ``person`` may resubscribe on their own: they unsubscribed, by their own act."""
    if person.status != state.UNSUBSCRIBED:
        return False
    leavings = [c for c in state.status_history(engine, person.id) if c.status == state.UNSUBSCRIBED]
    return bool(leavings) and leavings[-1].source in OWN_LEAVING


def show(engine: Engine, person: state.Subscriber, token: str, topics: Mapping[str, str], *, today: date,
         notice: str | None = None) -> Page:
    """The page as the subscriber's row has it now."""
    return Page(person, token, topics, tuple(CADENCES), Choices(person.topics, person.cadence, person.paused_until),
                today, may_resubscribe(engine, person), notice)


def read_choices(form: Mapping[str, Sequence[str]], person: state.Subscriber, topics: Mapping[str, str],
                 names: Mapping[str, str], *, today: date) -> tuple[Choices, dict[str, str]]:
    """The choices a submitted form makes, and what is wrong with each field (by name).
    Pure. What is wrong is kept as submitted, so the page shows the person their own input."""
    errors: dict[str, str] = {}
    chosen = tuple(dict.fromkeys(t for t in form.get("topics", ()) if t))
    cadence = (form.get("cadence") or [""])[0]
    slugs: tuple[str, ...] = chosen
    try:
        _, slugs = check_subscription(person.email, chosen, cadence if cadence in CADENCES else "daily",
                                      topics, names)
    except SubscriberError as e:
        errors["topics"] = "Choose at least one topic." if not chosen else str(e)
    if cadence not in CADENCES:
        errors["cadence"] = f"Choose how often: {' or '.join(CADENCES)}."
    paused_until, problem = _pause_date((form.get("paused_until") or [""])[0].strip(), today)
    if problem:
        errors["paused_until"] = problem
    return Choices(slugs, cadence, paused_until), errors


def _pause_date(text: str, today: date) -> tuple[date | None, str | None]:
    """The day a pause ends, from the date input's ``YYYY-MM-DD`` (empty: no pause)."""
    if not text:
        return None, None
    try:
        # Only what the date input sends: fromisoformat alone also takes 20261231 and 2026-W50-1.
        day = date.fromisoformat(text) if ISO_DAY.fullmatch(text) else None
    except ValueError:
        day = None
    if day is None:
        return None, "Give the date as year-month-day, for example 2026-01-31."
    if day <= today:
        return None, "Choose a day after today."
    if day > today + LONGEST_PAUSE:
        return None, f"Choose a day before {(today + LONGEST_PAUSE).isoformat()}; to stop for longer, unsubscribe."
    return day, None


@dataclass(frozen=True, slots=True)
class Submission:
    """One press of a button on the page: whose page, the form as sent, the topics one may
    choose (slug -> name; casefolded name -> slug) and the clock's two readings."""

    engine: Engine
    person: state.Subscriber
    token: str
    form: Mapping[str, Sequence[str]]
    topics: Mapping[str, str]
    names: Mapping[str, str]
    today: date
    now: datetime

    def page(self, notice: str | None = None, *, reread: bool = False) -> Page:
        """The page that follows; ``reread``: from the row as a change just left it."""
        person = _now(self.engine, self.person) if reread else self.person
        return show(self.engine, person, self.token, self.topics, today=self.today, notice=notice)


def submit(engine: Engine, person: state.Subscriber, token: str, form: Mapping[str, Sequence[str]],
           topics: Mapping[str, str], names: Mapping[str, str], *, today: date, now: datetime) -> Page:
    """Do what the pressed button asks and return the page that follows. A form with errors
    changes nothing and comes back with them."""
    action = pressed(form)
    if action is None:
        raise ValueError(f"no button {form.get('action')!r} on the preferences page: check pressed() first")
    return _HANDLERS[action](Submission(engine, person, token, form, topics, names, today, now))


def pressed(form: Mapping[str, Sequence[str]]) -> str | None:
    """The button the form was sent with: Save when it names none (a client that sends the
    form on Enter may leave the button out); None for one the page does not have, which
    must change nothing (it was once taken for Save)."""
    action = (form.get("action") or [SAVE])[0]
    return action if action in ACTIONS else None


def _save(sent: Submission) -> Page:
    person, engine, now = sent.person, sent.engine, sent.now
    if person.status not in (state.ACTIVE, state.PAUSED):
        return sent.page("Nothing was changed.")  # saving is no way back in: resubscribing is its own button
    choices, errors = read_choices(sent.form, person, sent.topics, sent.names, today=sent.today)
    if errors:
        return replace(sent.page(), choices=choices, errors=errors,
                       pause_text=(sent.form.get("paused_until") or [""])[0][:40])
    state.update_choices(engine, person.id, choices.topics, choices.cadence)
    if choices.paused_until is not None:
        state.pause(engine, person.id, choices.paused_until, now=now)
    elif person.status == state.PAUSED:
        state.set_status(engine, person.id, state.ACTIVE, source="preferences", now=now, reason="pause cancelled",
                         only_from=(state.PAUSED,))
    return sent.page(_saved(choices), reread=True)


def _unsubscribe(sent: Submission) -> Page:
    state.unsubscribe(sent.engine, sent.person.id, sent.now, source="preferences", reason="preferences page")
    return sent.page("You are unsubscribed: no more digests will be sent to this address.", reread=True)


def _resubscribe(sent: Submission) -> Page:
    if not may_resubscribe(sent.engine, sent.person):
        return sent.page("Nothing was changed.")
    state.set_status(sent.engine, sent.person.id, state.ACTIVE, source="preferences", now=sent.now,
                     reason="resubscribed on the preferences page", only_from=(state.UNSUBSCRIBED,))
    return sent.page("Welcome back: digests start again with the next edition.", reread=True)


_HANDLERS: dict[str, Callable[[Submission], Page]] = {SAVE: _save, UNSUBSCRIBE: _unsubscribe,
                                                      RESUBSCRIBE: _resubscribe}


def _saved(choices: Choices) -> str:
    if choices.paused_until is not None:
        return f"Saved. Digests are paused until {choices.paused_until.isoformat()}."
    return "Saved. Your next digest follows these choices."


def _now(engine: Engine, person: state.Subscriber) -> state.Subscriber:
    """The subscriber's row as it is after a change (the one just read may be stale)."""
    return state.get_subscriber(engine, person.id) or person
