"""The state database: subscribers, the delivery ledger, editions and settings.

SQLAlchemy Core, so the same code runs on the default SQLite file and on PostgreSQL (any
SQLAlchemy URL in ``state_db``). The ledger is the source of truth for what was sent: a
(subscriber, edition) is claimed before its message is sent and marked sent only after the
SMTP server accepted it.

Split by concern, as lemon24/reader splits its storage; callers use this package's names
(``state.add_subscriber(...)``), never the modules':

    schema.py       tables, status values, open_state() and the migrations of older databases
    subscribers.py  subscribers, their status and its history
    ledger.py       deliveries: claims, retries and what was sent
    settings.py     editions' web copies and the token secret
    daemon.py       the daemon's lease and its jobs' last runs

The tables themselves are ``feeds.state.schema``'s (here ``subscribers`` and ``settings``
name the modules).
"""

from feeds.errors import StateError
from feeds.state.daemon import (
    JobRun,
    Lease,
    acquire_lease,
    current_lease,
    last_job_runs,
    record_job_run,
    release_lease,
    renew_lease,
)
from feeds.state.ledger import (
    Delivery,
    LedgerEnds,
    claim_delivery,
    delivered_editions,
    fail_delivery,
    finish_delivery,
    get_delivery,
    last_period_ends,
    ledger_ends,
    message_subscriber,
    open_deliveries,
    record_delivery,
    take_over_delivery,
)
from feeds.state.schema import (
    ACTIVE,
    BOUNCED,
    CLAIMED,
    COMPLAINED,
    DEFERRED,
    DELIVERY_STATUSES,
    ERASED,
    ERASED_PREFIX,
    FAILED,
    LEFT,
    PAUSED,
    SENT,
    SOURCES,
    STATUSES,
    UNCONFIRMED,
    UNSUBSCRIBED,
    drop_old_pages,
    metadata,
    open_state,
    safe_url,
    transaction,
    utc,
)
from feeds.state.settings import list_editions, record_edition, secret
from feeds.state.signups import (
    SignUpRecord,
    claim_confirmation_mail,
    confirm_signup,
    delete_unconfirmed,
    get_signup,
    reclaim_erased,
    release_confirmation_mail,
    request_signup,
    stale_unconfirmed,
)
from feeds.state.subscribers import (
    StatusChange,
    Subscriber,
    add_subscriber,
    end_pauses,
    erase_subscriber,
    find_subscriber,
    get_subscriber,
    held_about,
    list_subscribers,
    pause,
    remove_subscriber,
    restore_erased,
    set_status,
    status_history,
    subscriber_status,
    unsubscribe,
    update_choices,
)

__all__ = [
    "ACTIVE",
    "BOUNCED",
    "CLAIMED",
    "COMPLAINED",
    "DEFERRED",
    "DELIVERY_STATUSES",
    "ERASED",
    "ERASED_PREFIX",
    "FAILED",
    "LEFT",
    "PAUSED",
    "SENT",
    "SOURCES",
    "STATUSES",
    "UNCONFIRMED",
    "UNSUBSCRIBED",
    "Delivery",
    "JobRun",
    "Lease",
    "LedgerEnds",
    "SignUpRecord",
    "StateError",
    "StatusChange",
    "Subscriber",
    "acquire_lease",
    "add_subscriber",
    "claim_confirmation_mail",
    "claim_delivery",
    "confirm_signup",
    "current_lease",
    "delete_unconfirmed",
    "delivered_editions",
    "drop_old_pages",
    "end_pauses",
    "erase_subscriber",
    "fail_delivery",
    "find_subscriber",
    "finish_delivery",
    "get_delivery",
    "get_signup",
    "get_subscriber",
    "held_about",
    "last_job_runs",
    "last_period_ends",
    "ledger_ends",
    "list_editions",
    "list_subscribers",
    "message_subscriber",
    "metadata",
    "open_deliveries",
    "open_state",
    "pause",
    "reclaim_erased",
    "record_delivery",
    "record_edition",
    "record_job_run",
    "release_confirmation_mail",
    "release_lease",
    "remove_subscriber",
    "renew_lease",
    "request_signup",
    "restore_erased",
    "safe_url",
    "secret",
    "set_status",
    "stale_unconfirmed",
    "status_history",
    "subscriber_status",
    "take_over_delivery",
    "transaction",
    "unsubscribe",
    "update_choices",
    "utc",
]
