"""Sending a digest run: the ledger decides, per subscriber, what is owed and claims it.

For each subscriber, in order: editions still owed from earlier runs (deferred, or claimed by
a sender that died) are retried as they were, same edition, period and Message-ID, until
``smtp.retry_for_hours`` after their first attempt, then failed; then this run's edition is
made if the cadence promise allows it (:func:`feeds.digest.is_due`), its period starting after
the last edition that was *sent*. Each (subscriber, edition) is claimed in the ledger before
its message is composed, so concurrent senders split the work; whatever goes wrong with one
subscriber's message is recorded against that subscriber and the run goes on.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
from collections.abc import Callable, Collection, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine

from feeds import state
from feeds.config import CADENCES, SmtpConfig
from feeds.deliver import Outcome, SmtpSender
from feeds.digest import edition_cadence, edition_day, edition_key, is_due, next_due_day, period
from feeds.errors import FeedsError, SendingHalted
from feeds.render.digest import Outgoing, RenderedEdition

log = logging.getLogger(__name__)


@dataclass
class DigestReport:
    """What a digest run did, per subscriber. ``failed`` holds only failures new in this
    run: an address refused by an earlier run is in ``failed_before`` and fails no run again."""

    sent: list[str] = field(default_factory=list)  # addresses the server accepted
    written: list[str] = field(default_factory=list)  # .eml paths under out/
    failed: list[str] = field(default_factory=list)  # "address: 550 reason", new in this run
    deferred: list[str] = field(default_factory=list)  # "address: 451 reason" (a later run retries)
    no_news: list[str] = field(default_factory=list)  # addresses with no new stories
    already: list[str] = field(default_factory=list)  # addresses the ledger has this edition sent for
    not_due: list[str] = field(default_factory=list)  # "address: next edition 2020-06-25" (cadence)
    elsewhere: list[str] = field(default_factory=list)  # addresses another sender is handling now
    failed_before: list[str] = field(default_factory=list)  # "address: reason" from an earlier run
    suppressed: list[str] = field(default_factory=list)  # not active: unsubscribed, bounced, complained
    paused: list[str] = field(default_factory=list)  # "address: until 2020-06-25" (the preferences page)
    resumed: list[str] = field(default_factory=list)  # "address: paused until 2020-06-18" (ended by this run)
    web_copies: list[str] = field(default_factory=list)  # web copy paths under out/
    stopped: bool = False  # asked to stop (or the server went away) before everyone was handled
    stop_reason: str = ""  # why the run stopped by itself, as one line (empty: asked to, or not stopped)
    queued: int = 0  # subscribers queued for `feeds worker` (queue.url set): they send, not this run
    batches: int = 0  # the batches those were queued in
    queued_for_workers: bool = False  # queue.url: this run queued (maybe nobody) instead of sending


# Makes one subscriber's edition (topics, cadence, period): None when it has no stories.
MakeEdition = Callable[[tuple[str, ...], str, datetime, datetime], RenderedEdition | None]
# Composes one subscriber's message of an edition, under its ledger key.
Compose = Callable[[state.Subscriber, str, RenderedEdition], Outgoing]
# The Message-ID of a (subscriber id, edition key): the same on every attempt.
MessageId = Callable[[int, str], str]


def claim_ttl(smtp: SmtpConfig) -> timedelta:
    """How long a claim holds without its sender finishing: one message's worst case (each
    attempt's connect, MAIL, RCPT and DATA timing out, and the backoffs between), with a
    minute to spare. A sender killed mid-message loses the claim after this, at the latest."""
    attempts = smtp.retries + 1
    backoffs = sum(smtp.backoff_seconds * 2**i for i in range(smtp.retries))
    return timedelta(seconds=attempts * 4 * smtp.timeout_seconds + backoffs + 60)


def pid_space() -> str:
    """Names the set of processes our pids belong to: this kernel boot and PID namespace.
    A host name does not (containers are all called "localhost"), and only a pid from the
    same boot and namespace may be asked whether it still lives. Empty where Linux's
    /proc does not tell: then no holder's pid is trusted, and claims wait for their expiry."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except (OSError, UnicodeError):
        return ""
    return hashlib.sha256(f"{boot} {namespace}".encode()).hexdigest()[:16]


def sender_id() -> str:
    """``host/pid/random/pid-space``: names this run in claims, and lets a later run in the
    same :func:`pid_space` see that the process holding a claim is gone."""
    return f"{socket.gethostname()[:64]}/{os.getpid()}/{secrets.token_hex(4)}/{pid_space()}"


def holder_is_gone(holder: str | None) -> bool:
    """True if ``holder`` ran in this :func:`pid_space` (this machine or container) and its
    process no longer exists (killed, or crashed): its claims need not wait for their expiry.
    A holder elsewhere, even under the same host name, is never judged by its pid."""
    _, pid, _, space = [*(holder or "").split("/"), "", "", ""][:4]
    if not space or space != pid_space() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists but is not ours to signal
        return False
    return False


def failure_reason(error: BaseException) -> str:
    return str(error) if isinstance(error, FeedsError) else f"{error.__class__.__name__}: {error}"


class Sending:
    """One ``--send`` run over a list of subscribers."""

    def __init__(self, engine: Engine, smtp_config: SmtpConfig, *, end: datetime, now: datetime,
                 clock: Callable[[], datetime], zone: ZoneInfo, make_edition: MakeEdition,
                 compose: Compose, message_id: MessageId, report: DigestReport,
                 only: Collection[int] | None = None) -> None:
        """``only``: the ids of the subscribers this run may serve (a worker's batch), so
        that it reads their ledger rows alone; None reads everyone's."""
        self.engine, self.smtp_config, self.end, self.now, self.clock = engine, smtp_config, end, now, clock
        self.zone, self.make_edition, self.compose, self.report = zone, make_edition, compose, report
        self.message_id = message_id
        self.server_gone = False  # the server stopped answering: the rest wait for the next run
        self.lost_in_a_row = 0  # messages deferred with the connection lost, one after another
        self.holder = sender_id()
        self.ttl = claim_ttl(smtp_config)
        self.retry_for = timedelta(hours=smtp_config.retry_for_hours)
        self.day = edition_day(end, zone)
        self.keys = {cadence: edition_key(cadence, self.day) for cadence in CADENCES}
        self.ends = state.ledger_ends(engine, only)
        self.rows: dict[int, list[state.Delivery]] = {}
        for row in state.open_deliveries(engine, tuple(self.keys.values()), only):
            self.rows.setdefault(row.subscriber_id, []).append(row)

    def run(self, people: Sequence[state.Subscriber], smtp: SmtpSender,
            should_stop: Callable[[], bool] | None, owed_only: Set[int] = frozenset()) -> None:
        """Serve ``people``; those in ``owed_only`` (ids) get only what earlier runs owe them."""
        for person in people:
            if (should_stop and should_stop()) or self.server_gone or self.report.stop_reason:
                self.report.stopped = True
                return
            self.serve(person, smtp, new_edition=person.id not in owed_only)

    def owed(self, person: state.Subscriber) -> bool:
        """Whether an earlier run left ``person`` a message to retry (deferred, or claimed by
        a sender that may have died)."""
        return any(row.status in (state.DEFERRED, state.CLAIMED) for row in self.rows.get(person.id, ()))

    def serve(self, person: state.Subscriber, smtp: SmtpSender, *, new_edition: bool = True) -> None:
        """Everything owed to one subscriber: old editions first, then this run's (unless
        not ``new_edition``: a run of another cadence retries what is owed, and no more)."""
        if not self.still_active(person):
            return
        key = self.keys[person.cadence]
        ends = self.ends.get(person.id)
        last_sent, last_made = (ends.last_sent, ends.last_made) if ends else (None, None)
        settled, last_sent = self.settle_owed(person, key, last_sent, smtp, new_edition)
        if settled or not new_edition or not self.due(person, last_made):
            return
        start, period_end = period(person.cadence, self.end, last_sent)
        self.send_new(person, key, start, period_end, smtp)

    def still_active(self, person: state.Subscriber) -> bool:
        """Whether ``person`` is still active now: the run's list was taken at its start, and
        a large run lasts long enough (10k at 10/s: 17 minutes) for someone to unsubscribe
        (or bounce) meanwhile. One lookup by id per subscriber, small beside an SMTP send."""
        if state.subscriber_status(self.engine, person.id) == state.ACTIVE:
            return True
        self.report.suppressed.append(person.email)
        return False

    def settle_owed(self, person: state.Subscriber, key: str, last_sent: datetime | None,
                    smtp: SmtpSender, new_edition: bool = True) -> tuple[bool, datetime | None]:
        """Retry the editions the ledger says are still owed to ``person``, oldest first.
        Returns whether nothing newer may be sent now (this run's edition ``key`` is
        settled, or an older one is still owed), and the end of the last edition sent."""
        for row in self.rows.get(person.id, []):
            if row.status in (state.DEFERRED, state.CLAIMED):
                status = self.retry(person, row, smtp)
                if row.edition == key or status not in (state.SENT, state.FAILED):
                    return True, last_sent  # this run's edition, done; or an older one still owed
                if status == state.SENT:
                    last_sent = max(filter(None, (last_sent, row.period_end)))
            elif row.edition == key and new_edition:
                if row.status == state.SENT:
                    self.report.already.append(person.email)
                else:
                    self.report.failed_before.append(f"{person.email}: {row.detail or row.status}")
                return True, last_sent
        return False, last_sent

    def due(self, person: state.Subscriber, last_made: datetime | None) -> bool:
        """Whether the cadence promise allows ``person`` a new edition now; if not, the
        day of their next one is reported."""
        if is_due(person.cadence, self.end, last_made, self.zone):
            return True
        assert last_made is not None
        self.report.not_due.append(f"{person.email}: next {person.cadence} edition "
                                   f"{next_due_day(person.cadence, last_made, self.zone)}")
        return False

    def send_new(self, person: state.Subscriber, key: str, start: datetime, end: datetime,
                 smtp: SmtpSender) -> None:
        try:
            rendered = self.make_edition(person.topics, person.cadence, start, end)
        except SendingHalted as e:  # this sender cannot make editions at all: nobody's fault
            self.report.stop_reason = str(e)
            return
        except Exception as e:  # a template fault: recorded against everyone it touches
            log.debug("edition for %s failed", person.email, exc_info=True)
            if self.claim(person, key, start, end):
                self.finish(person, key, Outcome(state.FAILED, failure_reason(e)))
            return
        if rendered is None:
            self.report.no_news.append(person.email)
        elif self.claim(person, key, start, end):
            self.deliver(person, key, rendered, smtp)

    def claim(self, person: state.Subscriber, key: str, start: datetime, end: datetime) -> bool:
        """Claim (person, key) for this run; False, and the reason reported, if another
        sender got there first."""
        existing = state.claim_delivery(
            self.engine, subscriber_id=person.id, edition=key, message_id=self.message_id(person.id, key),
            period_start=start, period_end=end, holder=self.holder, now=self.now, expires=self.clock() + self.ttl,
        )
        if existing is None:
            return True
        if existing.status == state.SENT:
            self.report.already.append(person.email)
        elif existing.status == state.FAILED:
            self.report.failed_before.append(f"{person.email}: {existing.detail or existing.status}")
        else:
            self.report.elsewhere.append(person.email)
        return False

    def retry(self, person: state.Subscriber, row: state.Delivery, smtp: SmtpSender) -> str:
        """Try an owed edition again, as it was; returns the row's status afterwards."""
        if row.status == state.CLAIMED and not self.abandoned(row):
            self.report.elsewhere.append(person.email)
            return state.CLAIMED
        first = row.first_attempt_at or row.period_end
        if self.now - first >= self.retry_for:
            return self.give_up(person, row, first)
        if not state.take_over_delivery(self.engine, row, holder=self.holder, expires=self.clock() + self.ttl):
            self.report.elsewhere.append(person.email)
            return state.CLAIMED
        return self.resend(person, row, smtp)

    def give_up(self, person: state.Subscriber, row: state.Delivery, first: datetime) -> str:
        """Fail an owed edition retried for ``smtp.retry_for_hours`` since ``first``."""
        reason = (f"gave up after {self.smtp_config.retry_for_hours:g} h of retries "
                  f"(first tried {first:%Y-%m-%d %H:%M} UTC): {row.detail or 'interrupted'}")
        if state.fail_delivery(self.engine, row, now=self.now, reason=reason):
            self.report.failed.append(f"{person.email}: {row.edition}: {reason}")
            return state.FAILED
        self.report.elsewhere.append(person.email)
        return state.CLAIMED

    def resend(self, person: state.Subscriber, row: state.Delivery, smtp: SmtpSender) -> str:
        """Make an owed edition again, as it was (edition, period and Message-ID), and
        deliver it under the claim just taken over."""
        cadence = edition_cadence(row.edition)
        start = row.period_start or row.period_end - CADENCES.get(cadence, CADENCES["daily"])
        try:
            rendered = self.make_edition(person.topics, cadence, start, row.period_end)
        except SendingHalted as e:  # this sender cannot make editions at all: still owed
            self.report.stop_reason = str(e)
            return self.finish(person, row.edition, Outcome(state.DEFERRED, str(e)))
        except Exception as e:
            log.debug("edition for %s failed", person.email, exc_info=True)
            return self.finish(person, row.edition, Outcome(state.FAILED, failure_reason(e)))
        if rendered is None:
            return self.finish(person, row.edition, Outcome(state.FAILED, "its stories are no longer in the corpus"))
        return self.deliver(person, row.edition, rendered, smtp)

    def abandoned(self, row: state.Delivery) -> bool:
        """A claim whose sender will not finish it: expired, or its process is gone."""
        expires = row.claim_expires
        return expires is None or expires <= self.clock() or holder_is_gone(row.claimed_by)

    def deliver(self, person: state.Subscriber, key: str, rendered: RenderedEdition, smtp: SmtpSender) -> str:
        """Compose and send the claimed (person, key); record what became of it."""
        try:
            message = self.compose(person, key, rendered)
            outcome = smtp.send(message)
        except SendingHalted as e:  # about the run, not this subscriber: they and the rest stay owed
            self.report.stop_reason = str(e)
            return self.finish(person, key, Outcome(state.DEFERRED, str(e)))
        except Exception as e:  # whatever it is, it is this subscriber's alone
            log.debug("message to %s failed", person.email, exc_info=True)
            outcome = Outcome(state.FAILED, failure_reason(e))
        except BaseException:  # interrupted: the next run sends it again, same Message-ID
            self.finish(person, key, Outcome(state.DEFERRED, "interrupted before the server answered"))
            raise
        # One message that kills the connection (a filter crashing on it) is its own fault, and
        # is retried first by every later run: only a second in a row says the server is gone.
        lost = outcome.status == state.DEFERRED and not smtp.connected
        self.lost_in_a_row = self.lost_in_a_row + 1 if lost else 0
        self.server_gone = self.lost_in_a_row >= 2
        if outcome.sender_refused:  # about the run, not this subscriber: the rest stay owed
            self.report.stop_reason = (f"the SMTP server refused the sender ({outcome.detail}); "
                                       "check mail_from and its domain")
        return self.finish(person, key, outcome)

    def finish(self, person: state.Subscriber, key: str, outcome: Outcome) -> str:
        if not state.finish_delivery(self.engine, subscriber_id=person.id, edition=key, holder=self.holder,
                                     status=outcome.status, now=self.now, detail=outcome.detail or None):
            log.warning("the claim on %s for %s expired while sending; another sender has it", key, person.email)
        if outcome.status == state.SENT:
            self.report.sent.append(person.email)
        elif outcome.status == state.DEFERRED:
            self.report.deferred.append(f"{person.email}: {outcome.detail}")
        else:
            self.report.failed.append(f"{person.email}: {outcome.detail}")
            if outcome.bounced:
                state.set_status(self.engine, person.id, state.BOUNCED, source="bounce", now=self.now,
                                 reason=outcome.detail)
        return outcome.status
