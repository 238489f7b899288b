"""The digest as its reader sees it: the topics they chose, a trimmed edition that says what
it left out, excerpts cut at a word, a preview that publishes nothing, and a test message
sent to one address without touching the ledger. Real records, the real CLI, a real SMTP
server on loopback, and the stdlib email parser and lxml reading what came out."""

from __future__ import annotations

import email
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import html as lxml_html

from feeds import state
from feeds.api import load_corpus
from feeds.config import load_config
from feeds.digest import plan_edition, token_subscriber
from feeds.render import shorten
from tests.conftest import write_record
from tests.mail import smtp_server
from tests.test_digest import (
    DATE,
    cli,
    parts,
    story_titles,
    subscribe,
    write_big_edition,
    write_config,
)

WEB = "https://news.example.org/newsletter/2020-06-18/"


def only_message(tmp_path: Path) -> EmailMessage:
    [eml] = (tmp_path / "out/outbox/2020-06-18").glob("*.eml")
    return email.message_from_bytes(eml.read_bytes(), policy=default)  # type: ignore[return-value]


def text_of(tree: lxml_html.HtmlElement, css_class: str) -> str:
    [cell] = tree.xpath(f'//td[contains(concat(" ", @class, " "), " {css_class} ")]')
    return " ".join(cell.text_content().split())


def engine_of(tmp_path: Path):  # type: ignore[no-untyped-def]
    return state.open_state(f"sqlite:///{tmp_path / 'state.db'}")


# ------------------------------------------------------------------- chosen topics


def test_header_and_footer_name_every_chosen_topic_not_only_those_with_news(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    write_record(seeds / "ai.md", title="Robots learn to read", topics=["AI"])
    # Robotics is a known topic, but its only story is a month old: no section today.
    write_record(seeds / "old.md", title="Old robots", topics=["Robotics"], webUrl="https://example.com/old",
                 publishedDateTime="2020-05-01T12:00:00Z")
    config = write_config(tmp_path, seeds=seeds)
    subscribe(config, "ada@example.org", "robotics,ai", "daily")
    code, out, err = cli(config, "digest", "--date", DATE)
    assert code == 0, out + err
    text, page = parts(only_message(tmp_path))
    tree = lxml_html.fromstring(page)
    assert text_of(tree, "topics") == "18 June 2020 · Daily digest · Robotics, AI"
    assert "daily digest of Robotics, AI because you subscribed" in text_of(tree, "footer")
    assert "Daily digest · Robotics, AI" in text
    assert "daily digest of Robotics, AI because you subscribed" in text
    assert re.findall(r"^== (.+) ==$", text, flags=re.M) == ["AI"]  # sections: only news


# ------------------------------------------------------------------ trimmed editions


def untrimmed_titles(config_path: Path, topics: list[str]) -> list[str]:
    config = load_config(config_path)
    corpus = load_corpus(config)
    slugs = [slug for slug, t in corpus.taxonomy.topics.items() if t.name in topics]
    end = datetime(2020, 6, 18, tzinfo=UTC)
    edition = plan_edition(corpus.articles, corpus.taxonomy, slugs, cadence="daily", start=end - timedelta(days=1),
                           end=end, zone=UTC, half_life=config.half_life, per_topic=20,
                           max_per_provider=config.max_items_per_provider)
    return [s.lead.title for s in edition.stories]


@pytest.mark.slow
def test_a_trimmed_edition_says_how_many_stories_it_left_out_and_the_web_copy_has_them(tmp_path: Path) -> None:
    topics = write_big_edition(tmp_path / "seeds")
    config = write_config(tmp_path, seeds=tmp_path / "seeds", digest_items_per_topic=20)
    subscribe(config, "ada@example.org", ",".join(topics), "daily")
    code, out, err = cli(config, "digest", "--date", DATE)
    assert code == 0, out + err
    text, page = parts(only_message(tmp_path))
    in_email = story_titles(page)
    web_url = WEB + "ai+ai-ethics+ai-in-healthcare+chips+computer-vision+nlp+policy+robotics/"

    tree = lxml_html.fromstring(page)
    [more] = tree.xpath('//td[contains(@class,"more")]//a')
    found = re.fullmatch(r"(\d+) more stories in the web copy", " ".join(more.text_content().split()))
    assert found and more.get("href") == web_url
    left_out = int(found.group(1))
    assert f"{left_out} more stories in the web copy: {web_url}" in text

    web_file = tmp_path / "out" / urlsplit(web_url).path.removeprefix("/") / "index.html"
    web = lxml_html.fromstring(web_file.read_bytes())
    in_web = [" ".join(a.text_content().split()) for a in web.xpath('//*[contains(@class,"headline")]//a')]
    assert sorted(in_web) == sorted(untrimmed_titles(config, topics))  # every topic's 20 best
    assert set(in_email) < set(in_web) and len(in_web) == len(in_email) + left_out
    assert not web.xpath('//td[contains(@class,"more")]')  # the web copy leaves nothing out


def test_an_edition_that_fits_says_nothing_is_left_out(tmp_path: Path) -> None:
    write_record(tmp_path / "seeds/a.md", title="Robots learn to read")
    config = write_config(tmp_path, seeds=tmp_path / "seeds")
    subscribe(config, "ada@example.org", "ai", "daily")
    assert cli(config, "digest", "--date", DATE)[0] == 0
    text, page = parts(only_message(tmp_path))
    assert not lxml_html.fromstring(page).xpath('//td[contains(@class,"more")]')
    assert "in the web copy" not in text


# ------------------------------------------------------------------------- excerpts


LONG_EXCERPT = ("Researchers trained a model on thousands of hours of recorded speech and found that "
                "it transcribes accented English far better than earlier systems did, though it still "
                "struggles with names, numbers and overlapping voices; the team plans to release the "
                "weights, the evaluation sets and a detailed report on failure cases next month.")


def test_long_excerpts_are_cut_at_a_word_with_an_ellipsis(tmp_path: Path) -> None:
    assert len(LONG_EXCERPT) > 300
    write_record(tmp_path / "seeds/a.md", title="Speech models", excerpt=LONG_EXCERPT)
    config = write_config(tmp_path, seeds=tmp_path / "seeds")
    subscribe(config, "ada@example.org", "ai", "daily")
    assert cli(config, "digest", "--date", DATE)[0] == 0
    text, page = parts(only_message(tmp_path))
    shown = " ".join(lxml_html.fromstring(page).xpath(
        '//div[starts-with(normalize-space(.), "Researchers")]')[-1].text_content().split())
    assert shown.endswith("…") and len(shown) <= 300
    kept = shown.removesuffix("…")
    assert LONG_EXCERPT.startswith(kept) and LONG_EXCERPT[len(kept)] in " ,;"  # a whole word
    in_text = " ".join(text.split("Speech models\n", 1)[1].split("\nExample ·")[0].split())
    assert in_text == shown


@given(st.text(alphabet=st.sampled_from("ab c,.\n"), max_size=80), st.integers(min_value=4, max_value=40))
def test_shorten_fits_and_cuts_only_between_words(text: str, limit: int) -> None:
    folded = " ".join(text.split())
    short = shorten(text, limit)
    assert len(short) <= limit
    if len(folded) <= limit:
        assert short == folded
        return
    assert short.endswith("…")
    kept = short.removesuffix("…")
    assert folded.startswith(kept)
    at_a_word = folded[len(kept)] in " ,."
    a_long_word = folded.rfind(" ", 0, limit) < limit // 2  # cut where the limit falls
    assert at_a_word or a_long_word


# -------------------------------------------------------------------------- preview


def test_preview_writes_only_its_own_file_and_publishes_nothing(tmp_path: Path) -> None:
    write_record(tmp_path / "seeds/a.md", title="Robots learn to read")
    config = write_config(tmp_path, seeds=tmp_path / "seeds")
    code, out, err = cli(config, "digest", "--preview", "--topics", "ai", "--date", DATE)
    assert code == 0, out + err
    path = tmp_path / "out/preview/2020-06-18/ai/index.html"
    assert out == f"Preview of 1 story written to {path}\n"
    assert story_titles(path.read_text()) == ["Robots learn to read"]
    assert [p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*") if p.is_file()] == [
        Path("preview/2020-06-18/ai/index.html")]
    assert state.list_editions(engine_of(tmp_path)) == []


def test_a_preview_after_a_real_run_leaves_the_archive_as_it_was(tmp_path: Path) -> None:
    write_record(tmp_path / "seeds/a.md", title="Robots learn to read")
    config = write_config(tmp_path, seeds=tmp_path / "seeds")
    subscribe(config, "ada@example.org", "ai", "daily")
    assert cli(config, "digest", "--date", DATE)[0] == 0
    archive = tmp_path / "out/newsletter/atom.xml"
    before = archive.read_bytes(), archive.stat().st_mtime_ns, state.list_editions(engine_of(tmp_path))
    write_record(tmp_path / "seeds/b.md", title="Robots learn to write", webUrl="https://example.com/b")
    assert cli(config, "digest", "--preview", "--topics", "ai", "--date", "2020-06-18T06:00:00Z")[0] == 0
    assert (archive.read_bytes(), archive.stat().st_mtime_ns, state.list_editions(engine_of(tmp_path))) == before
    assert story_titles((tmp_path / "out/newsletter/2020-06-18/ai/index.html").read_text()) == [
        "Robots learn to read"]


# --------------------------------------------------------------------- test messages


def test_test_to_sends_one_real_edition_and_records_nothing(tmp_path: Path) -> None:
    write_record(tmp_path / "seeds/a.md", title="Robots learn to read")
    write_record(tmp_path / "seeds/b.md", title="Cameras that see", topics=["Computer Vision"],
                 webUrl="https://example.com/b")
    with smtp_server() as (server, port):
        config = write_config(tmp_path, port, seeds=tmp_path / "seeds")
        subscribe(config, "ada@example.org", "computer-vision", "weekly")
        code, out, err = cli(config, "digest", "--test-to", "Me@Example.org", "--as", "ada@example.org",
                             "--date", DATE)
        assert code == 0, out + err
        assert out == ("Sent a test of the weekly edition of 2020-06-18 (computer-vision) to me@example.org: "
                       "1 story. Nothing was recorded.\n")
        [message] = server.received()
        assert message["To"] == "me@example.org"
        text, page = parts(message)
        assert story_titles(page) == ["Cameras that see"]  # ada's topics, ada's cadence
        assert "Weekly digest · Computer Vision" in text
        # The unsubscribe links name nobody: following them cannot unsubscribe ada.
        https = re.findall(r"<([^>]+)>", message["List-Unsubscribe"])[0]
        token = parse_qs(urlsplit(https).query)["token"][0]
        assert token_subscriber(token) is None
        assert https in lxml_html.fromstring(page).xpath("//a/@href")
        assert "ada@example.org" not in message.as_string()

        engine = engine_of(tmp_path)
        assert state.delivered_editions(engine, "weekly-2020-06-18") == {}
        assert state.list_editions(engine) == []
        assert not (tmp_path / "out").exists()

        # The real run afterwards still sends ada her edition.
        assert cli(config, "digest", "--date", DATE, "--send")[0] == 0
        assert [m["To"] for m in server.received()] == ["me@example.org", "ada@example.org"]
        assert server.received()[0]["Message-ID"] != server.received()[1]["Message-ID"]


def test_test_to_with_topics_and_its_refusals(tmp_path: Path) -> None:
    write_record(tmp_path / "seeds/a.md", title="Robots learn to read")
    with smtp_server() as (server, port):
        config = write_config(tmp_path, port, seeds=tmp_path / "seeds")
        code, out, err = cli(config, "digest", "--test-to", "me@example.org", "--topics", "AI", "--date", DATE)
        assert code == 0, out + err
        [message] = server.received()
        assert story_titles(parts(message)[1]) == ["Robots learn to read"]

        code, out, err = cli(config, "digest", "--test-to", "me@example.org", "--as", "nobody@example.org")
        assert code == 1 and "no subscriber 'nobody@example.org'" in out + err
        code, out, err = cli(config, "digest", "--test-to", "me@example.org", "--topics", "ai",
                             "--date", "2020-07-01T00:00:00Z")
        assert code == 1 and "no stories between" in out + err
        code, out, err = cli(config, "digest", "--test-to", "me@example.org", "--as", "a@example.org",
                             "--topics", "ai")
        assert code == 2 and "--as goes with --test-to, and instead of --topics" in out + err
        server.scripted["me@example.org"] = ["550 5.1.1 No such user"]
        code, out, err = cli(config, "digest", "--test-to", "me@example.org", "--topics", "ai", "--date", DATE)
        assert code == 1 and "Test message to me@example.org not sent: 550 5.1.1 No such user" in err
        assert len(server.received()) == 1
