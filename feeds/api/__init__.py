"""The library API: one function per job, each a run of the stages.

``build`` reads records, ranks them per topic and writes every feed; ``digest`` makes and
delivers editions; the subscriber functions keep the list. The CLI and the scheduler call
these; they do not reach into the stages themselves.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from feeds.api.builds import (
        EPOCH,
        Corpus,
        Progress,
        build,
        load_corpus,
        plan_feeds,
        render_site,
        stable_until,
    )
    from feeds.api.digests import (
        DigestReport,
        digest,
        digest_secret,
        preferences_url,
        preview,
        send_test,
        unsubscribe_url,
        write_archive,
    )
    from feeds.api.explain import Explanation, Placement, explain
    from feeds.api.inbox import InboxReport, process_inbox
    from feeds.api.service import ServiceStatus, init, serve, service_status
    from feeds.api.signup import SignUpResult, confirm, purge_unconfirmed, sign_up
    from feeds.api.subscribers import (
        ImportReport,
        SubscriberError,
        Subscription,
        add_subscriber,
        check_subscription,
        describe_status,
        erase_subscriber,
        export_subscriber,
        import_subscribers,
        known_topics,
        list_histories,
        list_subscribers,
        remove_subscriber,
    )
    from feeds.queue import QueueStatus
    from feeds.render.feeds import FeedDoc
    from feeds.report import BuildReport


# Where each name lives: imported on first use, so a build does not import the digest's
# database toolkit and mail machinery (a third of a second) just to rank records.
_MODULES = {
    **dict.fromkeys(["EPOCH", "Corpus", "Progress", "build", "load_corpus", "plan_feeds", "render_site",
                     "stable_until"], "feeds.api.builds"),
    **dict.fromkeys(["DigestReport", "digest", "digest_secret", "preview", "send_test",
                     "preferences_url", "unsubscribe_url",
                     "write_archive"], "feeds.api.digests"),
    **dict.fromkeys(["InboxReport", "process_inbox"], "feeds.api.inbox"),
    **dict.fromkeys(["ImportReport", "SubscriberError", "Subscription", "add_subscriber", "check_subscription",
                     "import_subscribers", "known_topics", "list_subscribers", "remove_subscriber",
                     "describe_status", "erase_subscriber", "export_subscriber", "list_histories"],
                    "feeds.api.subscribers"),
    **dict.fromkeys(["SignUpResult", "confirm", "purge_unconfirmed", "sign_up"], "feeds.api.signup"),
    **dict.fromkeys(["Explanation", "Placement", "explain"], "feeds.api.explain"),
    **dict.fromkeys(["ServiceStatus", "init", "serve", "service_status"], "feeds.api.service"),
    "FeedDoc": "feeds.render.feeds",
    "QueueStatus": "feeds.queue",
    "BuildReport": "feeds.report",
}


def __getattr__(name: str) -> object:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_MODULES[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "EPOCH",
    "BuildReport",
    "Corpus",
    "DigestReport",
    "Explanation",
    "FeedDoc",
    "ImportReport",
    "InboxReport",
    "Placement",
    "Progress",
    "QueueStatus",
    "ServiceStatus",
    "SignUpResult",
    "SubscriberError",
    "Subscription",
    "add_subscriber",
    "build",
    "check_subscription",
    "confirm",
    "describe_status",
    "digest",
    "digest_secret",
    "erase_subscriber",
    "explain",
    "export_subscriber",
    "import_subscribers",
    "init",
    "known_topics",
    "list_histories",
    "list_subscribers",
    "load_corpus",
    "plan_feeds",
    "preferences_url",
    "preview",
    "process_inbox",
    "purge_unconfirmed",
    "remove_subscriber",
    "render_site",
    "send_test",
    "serve",
    "service_status",
    "sign_up",
    "stable_until",
    "unsubscribe_url",
    "write_archive",
]
