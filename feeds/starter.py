"""``feeds init``: a commented starter ``feeds.yaml`` with every key at its default.

The text is written by hand, to read well; tests check that it loads back to exactly the
defaults and that it names every key of :class:`feeds.config.Config`.
"""

from __future__ import annotations

import os
from pathlib import Path

from feeds.config import CONFIG_NAME
from feeds.errors import ConfigError, ConfigExists

STARTER = """\
# feeds configuration. Every key is at its default: change what you need, delete the rest.
# Relative paths are resolved against this file's folder, whatever folder feeds runs from.
# Found by: feeds --config FILE, else $FEEDS_CONFIG, else ./feeds.yaml.

# --- The feeds
title: feeds                    # site title; a feed is titled "title: Topic"
description: "The best stories per topic, ranked by quality and recency."  # the all feed's and index page's
base_url: http://localhost:8000/  # absolute URL where out/ is served; every link uses it
language: en                    # language tag of the feeds and page
items_per_feed: 50              # stories per feed
half_life_hours: 48             # hours in which an article's score halves
max_items_per_provider: null    # most stories one outlet may lead in one feed; null: no cap
max_age_days: null              # leave out articles older than this; null: keep all
max_record_bytes: 1048576       # larger record files are skipped

# --- Files (relative to this file's folder)
seeds: seeds                    # folder of records
out: out                        # output folder: the feeds, the OPML list, the index page
topics: []                      # topic definitions: a folder or file of them, or a list
state_db: feeds.db              # state database: a SQLite file, or an SQLAlchemy URL (postgresql://...)
cache_db: feeds-cache.db        # the parse cache: a local SQLite file, rebuilt when missing

# --- The digest
timezone: UTC                   # IANA time zone of edition dates and schedules
digest_items_per_topic: 5       # stories per digest section
mail_from: "feeds <feeds@localhost>"  # the digest's From
reply_to: null                  # the digest's Reply-To
secret: null                    # signs unsubscribe tokens; null: made once, kept in state_db.
                                # FEEDS_SECRET in the environment wins over it.

smtp:                           # where feeds digest --send hands messages over
  host: localhost
  port: 25
  security: none                # none, starttls or tls
  user: null                    # login; the password comes only from FEEDS_SMTP_PASSWORD
  rate_per_second: 10           # most messages a second
  retries: 3                    # retries after a temporary (4xx) refusal
  backoff_seconds: 2            # wait before the first retry; it doubles each time
  timeout_seconds: 30           # network timeout
  retry_for_hours: 72           # a deferred message is retried this long, then failed

# --- The daemon (feeds run)
schedule:
  build_every_minutes: 15       # rebuild the feeds this often; null turns it off
  build_cron: null              # a crontab line instead, such as "*/10 * * * *"
  daily_digest_at: "07:00"      # in timezone; null turns daily digests off
  weekly_digest_at: "mon 07:00" # null turns weekly digests off
  misfire_grace_minutes: 120    # after downtime, a run missed by more than this is skipped
  lease_seconds: 60             # how long a daemon's claim on state_db lasts without renewal

serve:                          # the HTTP server of feeds serve and feeds run
  host: 127.0.0.1               # address to listen on (feeds serve --host wins)
  port: 8000                    # port (--port wins)
  cache_seconds: 300            # Cache-Control max-age for feeds and pages

signup:                         # readers' own sign-up on feeds serve (double opt-in)
  confirm_within_hours: 48      # a confirmation link works this long
  resend_after_hours: 12        # at most one confirmation mail per address per this
  purge_after_hours: 168        # unconfirmed sign-ups are deleted this long after their first request
  rate_per_ip: 10/hour          # sign-up requests per client address
  rate_per_email: 5/hour        # sign-up requests per e-mail address
  rate_limit_storage: memory:// # where rate limits count: memory://, redis://host:6379, ...

# --- Delivery by workers (feeds worker), for lists one machine cannot send alone
queue:
  url: null                     # redis://host:6379/0 sends digests through feeds worker; null: inline
  batch_size: 100               # subscribers per queued batch
  heartbeat_timeout_seconds: 60 # a worker silent this long is dead: its batches go to another
  domain_rate_per_second: null  # most messages a second to one recipient domain, all workers together
"""


def write_starter(folder: Path) -> Path:
    """Write ``folder/feeds.yaml`` (making ``folder`` if needed) and return its path.
    Raises ConfigExists rather than overwrite a config, and ConfigError if it cannot write."""
    path = folder / CONFIG_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # O_EXCL: never overwrite, even one made between a check and the write.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError as e:
        raise ConfigExists(path) from e
    except OSError as e:
        raise ConfigError(path, f"cannot write: {e.strerror or e}") from e
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(STARTER)
    return path
