"""Every digest edition scores low in SpamAssassin (Debian's ``spamassassin``, local rules
only, no network): the editions the seeds give and editions of the real corpus. A rule
that fires is fixed in the template, never by changing the rules.

SpamAssassin starts slowly (about a second to load its rules), so every message goes to
one run, as an mbox; and each distinct edition is scored once, not each subscriber's copy.
"""

from __future__ import annotations

import mailbox
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest

from feeds.api import known_topics, load_corpus
from feeds.config import load_config
from tests.conftest import SEEDS
from tests.test_digest import cli, subscribe, write_config

pytestmark = pytest.mark.slow  # SpamAssassin takes seconds to score the editions

LIMIT = 0.5  # every edition must score below this


@pytest.fixture(scope="module")
def spamassassin() -> str:
    found = shutil.which("spamassassin")
    if found is None:
        if os.environ.get("FEEDS_REQUIRE_SPAMASSASSIN"):
            pytest.fail("SpamAssassin is required here (FEEDS_REQUIRE_SPAMASSASSIN) but was not found")
        pytest.skip("Debian's spamassassin is not installed (apt-get install spamassassin)")
    return found


def score(spamassassin: str, messages: list[Path], tmp_path: Path) -> dict[Path, tuple[float, list[str]]]:
    """Each message's score and the rules that fired, from one ``spamassassin -L -t`` run
    over an mbox of them all (-L: local tests only; -x with -p: a throwaway preferences
    file, never the user's)."""
    box_path = tmp_path / "editions.mbox"
    box = mailbox.mbox(box_path)
    for path in messages:
        box.add(mailbox.mboxMessage(path.read_bytes()))
    box.flush()
    box.close()
    prefs = tmp_path / "user_prefs"
    prefs.write_text("")
    with box_path.open("rb") as stdin:
        run = subprocess.run([spamassassin, "-L", "-t", "-x", "-p", str(prefs), "--mbox"], stdin=stdin,
                             capture_output=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    out_path = tmp_path / "scored.mbox"
    out_path.write_bytes(run.stdout)
    scored = [message_from_bytes(m.as_bytes(), policy=default) for m in mailbox.mbox(out_path)]
    assert len(scored) == len(messages), run.stderr.decode(errors="replace")
    return {path: status(m) for path, m in zip(messages, scored, strict=True)}  # type: ignore[arg-type]


def status(message: EmailMessage) -> tuple[float, list[str]]:
    """``X-Spam-Status: No, score=0.7 required=5.0 tests=HTML_FONT_LOW_CONTRAST,...``"""
    header = " ".join(str(message["X-Spam-Status"]).split())  # folded after a comma of tests=
    found = re.search(r"score=(-?[\d.]+) .*?tests=(.*?)(?: autolearn=| version=|$)", header)
    assert found, header
    return float(found.group(1)), [t.strip() for t in found.group(2).split(",") if t.strip() not in ("", "none")]


def outbox(tmp_path: Path) -> Iterator[Path]:
    yield from sorted((tmp_path / "out/outbox").glob("*/*.eml"))


def make_editions(config: Path, subscriptions: list[tuple[str, str]], dates: list[str]) -> None:
    """One subscriber per (topics, cadence): each gets a distinct edition on each date."""
    for n, (topics, cadence) in enumerate(subscriptions):
        subscribe(config, f"reader{n}@example.org", topics, cadence)
    for date in dates:
        code, out, err = cli(config, "digest", "--date", date)
        assert code == 0, out + err


def assert_all_below_limit(scores: dict[Path, tuple[float, list[str]]]) -> None:
    high = {f"{p.parent.name}/{p.name}": s for p, s in scores.items() if s[0] >= LIMIT}
    assert not high, f"editions scoring {LIMIT} or more (score, rules): {high}"


def test_every_seed_edition_scores_low(spamassassin: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, seeds=SEEDS)
    corpus = load_corpus(load_config(config))
    days = sorted({a.published.date() for a in corpus.articles})
    # Each day's daily edition, and the week's, for every topic alone and all together.
    dates = [f"{day + timedelta(days=1)}T00:00:00Z" for day in days]
    subscriptions = [(slug, "daily") for slug in known_topics(corpus)] + [("all", "weekly")]
    make_editions(config, subscriptions, dates)
    messages = list(outbox(tmp_path))
    assert len(messages) >= len(days)
    assert_all_below_limit(score(spamassassin, messages, tmp_path))


def test_corpus_editions_score_low(spamassassin: str, tmp_path: Path, corpus: Path) -> None:
    config = write_config(tmp_path, seeds=corpus / "articles", topics=corpus / "topics")
    subscriptions = [("all", "daily"), ("power-apps", "weekly"), ("canvas-apps,ai-builder,portals", "weekly"),
                     ("all", "weekly")]
    dates = ["2021-05-05T00:00:00Z", "2021-05-12T00:00:00Z", "2021-05-26T00:00:00Z", "2021-06-03T00:00:00Z"]
    make_editions(config, subscriptions, dates)
    messages = list(outbox(tmp_path))
    assert len(messages) >= 12
    assert_all_below_limit(score(spamassassin, messages, tmp_path))
