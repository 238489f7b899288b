"""The library API: one function per job, each a run of the stages.

``build`` reads records, ranks them per topic and writes every feed; ``digest`` makes and
delivers editions; the subscriber functions keep the list. The CLI and the scheduler call
these; they do not reach into the stages themselves.
"""

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
    preview,
    unsubscribe_url,
    write_archive,
)
from feeds.api.subscribers import (
    ImportReport,
    SubscriberError,
    add_subscriber,
    check_subscription,
    import_subscribers,
    known_topics,
    list_subscribers,
    remove_subscriber,
)
from feeds.render.feeds import FeedDoc
from feeds.report import BuildReport

__all__ = [
    "EPOCH",
    "BuildReport",
    "Corpus",
    "DigestReport",
    "FeedDoc",
    "ImportReport",
    "Progress",
    "SubscriberError",
    "add_subscriber",
    "build",
    "check_subscription",
    "digest",
    "digest_secret",
    "import_subscribers",
    "known_topics",
    "list_subscribers",
    "load_corpus",
    "plan_feeds",
    "preview",
    "remove_subscriber",
    "render_site",
    "stable_until",
    "unsubscribe_url",
    "write_archive",
]
