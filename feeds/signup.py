"""Sign-up's pure parts: the confirmation token, and the form's checks field by field.

Pure, as feeds.digest is: the secret, the clock's reading and the known topics are
arguments. The token is single-purpose (its HMAC says ``confirm:``, so no unsubscribe or
preferences token is ever taken for one), names the subscriber, when it was issued and what
they asked for, and expires: a confirmation link forwarded or found in an old mailbox a
month later confirms nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from feeds.config import CADENCES

# Slugs are [a-z0-9-] (feeds.normalise.slugify), so "_" can join them.
_TOKEN = re.compile(r"(\d{1,12})\.(\d{1,12})\.([a-z]{1,16})\.([a-z0-9_-]{1,2000})\.([0-9a-f]{32})")
CLOCK_SKEW = timedelta(minutes=5)  # a token "from the future" by less than this is the clock's fault


@dataclass(frozen=True, slots=True)
class ConfirmationClaim:
    """What a confirmation token says, before its signature is checked."""

    subscriber_id: int
    issued: datetime  # UTC, whole seconds
    cadence: str
    topics: tuple[str, ...]


def confirmation_token(secret: str, subscriber_id: int, email: str, topics: Sequence[str], cadence: str,
                       issued: datetime) -> str:
    """``<id>.<issued>.<cadence>.<topic_topic>.<hmac>``: the address is signed too, so a
    recycled id never honours an old token."""
    payload = f"{subscriber_id}.{int(issued.timestamp())}.{cadence}.{'_'.join(topics)}"
    return f"{payload}.{_mac(secret, payload, email)}"


def read_confirmation(token: str) -> ConfirmationClaim | None:
    """The claim a token makes; None if it is malformed."""
    match = _TOKEN.fullmatch(token or "")
    if match is None or match[3] not in CADENCES:
        return None
    return ConfirmationClaim(int(match[1]), datetime.fromtimestamp(int(match[2]), UTC), match[3],
                             tuple(match[4].split("_")))


def verify_confirmation(secret: str, token: str, email: str, *, now: datetime, valid_for: timedelta) -> bool:
    """Whether ``token`` was signed by us for ``email`` and is still within ``valid_for``."""
    claim = read_confirmation(token)
    if claim is None:
        return False
    payload = token.rpartition(".")[0]
    if not hmac.compare_digest(token.rpartition(".")[2], _mac(secret, payload, email)):
        return False
    return claim.issued - CLOCK_SKEW <= now <= claim.issued + valid_for


def _mac(secret: str, payload: str, email: str) -> str:
    return hmac.new(secret.encode(), f"confirm:{payload}:{email.casefold()}".encode(), hashlib.sha256).hexdigest()[:32]


# ------------------------------------------------------------------------ the form


@dataclass(frozen=True, slots=True)
class SignUpForm:
    """The sign-up form as sent: what the person typed and ticked, unchecked, so that a
    form with errors is shown again with their values."""

    email: str = ""
    topics: tuple[str, ...] = ()
    cadence: str = "daily"


FIELD_MESSAGES = {
    "email": "Enter an email address like name@example.org",
    "topics": "Choose at least one topic from the list",
    "cadence": "Choose how often: daily or weekly",
}


def form_errors(form: SignUpForm, known: Mapping[str, str], email_ok: bool) -> dict[str, str]:
    """Field name -> what to tell the person, one message per field that is wrong, in
    the form's order. ``email_ok``: whether the address passed the address check (kept in
    :func:`feeds.api.subscribers.check_subscription`, one check for operator and reader)."""
    errors: dict[str, str] = {}
    if not email_ok:
        errors["email"] = FIELD_MESSAGES["email"]
    if not form.topics or any(t not in known for t in form.topics):
        errors["topics"] = FIELD_MESSAGES["topics"]
    if form.cadence not in CADENCES:
        errors["cadence"] = FIELD_MESSAGES["cadence"]
    return errors
