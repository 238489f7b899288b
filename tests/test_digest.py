"""The digest: subscribers, editions, the email itself and exactly-once delivery, with a
real SMTP server on loopback and the stdlib email parser reading what arrived."""

from __future__ import annotations

import email
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from lxml import html as lxml_html

from feeds import state
from feeds.digest import token_subscriber, verify_token
from tests.conftest import SEEDS, run_cli, write_record, write_video
from tests.mail import smtp_server

# The seeds span 11-15 June 2020: the week to 18 June holds them all (a day holds one at most).
DATE = "2020-06-18T00:00:00Z"
SECRET = "a-test-secret-that-is-long-enough"


def write_config(tmp_path: Path, port: int = 25, seeds: Path = SEEDS, **extra: object) -> Path:
    lines = [
        "title: AI Digest",
        "base_url: https://news.example.org/",
        f"seeds: {seeds}",
        f"out: {tmp_path / 'out'}",
        f"state_db: {tmp_path / 'state.db'}",
        f"secret: {SECRET}",
        "mail_from: AI Digest <digest@news.example.org>",
        "reply_to: editors@news.example.org",
        "smtp:",
        "  host: 127.0.0.1",
        f"  port: {port}",
        f"  rate_per_second: {extra.pop('rate', 1000)}",
        "  retries: 2",
        "  backoff_seconds: 0.05",
        *(f"{k}: {v}" for k, v in extra.items()),
    ]
    path = tmp_path / "feeds.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def cli(config: Path, *args: str) -> tuple[int, str, str]:
    result = run_cli(*args, "--config", str(config))
    return result.exit_code, result.stdout, result.stderr


def subscribe(config: Path, address: str, topics: str = "ai", cadence: str = "weekly") -> None:
    code, out, err = cli(config, "subscribers", "add", address, "--topics", topics, "--cadence", cadence)
    assert code == 0, out + err


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    page = message.get_body(("html",))
    assert text is not None and page is not None
    return text.get_content().replace("\r\n", "\n"), page.get_content()


def story_titles(page: str) -> list[str]:
    tree = lxml_html.fromstring(page)
    return [" ".join(a.text_content().split()) for a in tree.xpath('//*[contains(@class,"headline")]//a')]


# ------------------------------------------------------------------------ subscribers


def test_subscribers_add_list_remove(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    subscribe(config, "Ada@Example.org", "ai,Computer Vision", "weekly")
    code, out, err = cli(config, "subscribers", "list")
    assert code == 0 and out.splitlines() == ["ada@example.org\tweekly\tai,computer-vision  (active)"]
    assert "1 subscriber, 1 active." in err
    code, out, _ = cli(config, "subscribers", "remove", "ada@example.org")
    assert code == 0
    assert cli(config, "subscribers", "list")[1] == ""


@pytest.mark.parametrize("address, topics, message", [
    ("not-an-address", "ai", "is not a valid e-mail address"),
    ("ada@example", "ai", "is not a valid e-mail address"),
    ("ada@example.org", "robots", "unknown topic 'robots'; known topics: all, ai, aws-ai"),
])
def test_bad_subscriptions_are_refused_clearly(tmp_path: Path, address: str, topics: str, message: str) -> None:
    config = write_config(tmp_path)
    code, out, err = cli(config, "subscribers", "add", address, "--topics", topics)
    assert code == 1 and message in out + err


def test_subscribers_import_reports_bad_rows_and_keeps_good_ones(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    people = tmp_path / "people.csv"
    people.write_text("email,topics,cadence\nada@example.org,ai;computer-vision,daily\n"
                      "bob@example,ai,daily\ncy@example.org,robots,daily\ndee@example.org,all,weekly\n")
    code, out, err = cli(config, "subscribers", "import", str(people))
    assert code == 0
    assert "Imported 2 new, 0 updated, 0 unchanged, 0 not reactivated, 2 skipped." in out
    assert f"{people}:3: 'bob@example' is not a valid e-mail address" in err
    assert f"{people}:4: unknown topic 'robots'" in err
    emails = [line.split("\t")[0] for line in cli(config, "subscribers", "list")[1].splitlines()]
    assert emails == ["ada@example.org", "dee@example.org"]


# ---------------------------------------------------------------------------- editions


def test_seeds_edition_folds_coverage_into_three_stories(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    subscribe(config, "ada@example.org", "ai")
    code, out, err = cli(config, "digest", "--date", DATE)
    assert code == 0, out + err
    [eml] = (tmp_path / "out/outbox/2020-06-18").glob("*.eml")
    message = email.message_from_bytes(eml.read_bytes(), policy=default)
    text, page = parts(message)  # type: ignore[arg-type]
    assert story_titles(page) == [
        "Amazon is banning cops from using its facial recognition tech for one year",
        "IBM, Microsoft And Amazon Not Letting Police Use Their Facial Recognition Technology",
        "Microsoft bars facial recognition sales to police",
    ]
    tree = lxml_html.fromstring(page)
    coverage = [" ".join(t.text_content().split())
                for t in tree.xpath('//div[starts-with(normalize-space(.), "Also covered by")]')]
    assert len(coverage) == 3
    assert coverage[0] == "Also covered by MSPoweruser, Tech.co"  # Mic's: MSPoweruser folded in
    assert coverage[1].startswith("Also covered by TechCrunch, CNET, Mashable, ")  # Forbes's own related
    assert coverage[2].startswith("Also covered by Washington Post, Forbes, ")  # the BBC's: the Post folded in
    assert "MSPoweruser <https://mspoweruser.com/" in text
    assert "Washington Post <https://www.washingtonpost.com/" in text


def test_a_video_shows_its_thumbnail_never_an_iframe(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    shutil.copytree(SEEDS, seeds)
    write_video(seeds / "video.md")
    config = write_config(tmp_path, seeds=seeds)
    subscribe(config, "ada@example.org", "ai")
    code, out, err = cli(config, "digest", "--date", DATE)
    assert code == 0, out + err
    [eml] = (tmp_path / "out/outbox/2020-06-18").glob("*.eml")
    text, page = parts(email.message_from_bytes(eml.read_bytes(), policy=default))  # type: ignore[arg-type]
    assert story_titles(page)[0] == "Facial recognition: Should police be allowed to use it?"
    assert "[Video] Facial recognition" in text
    assert "iframe" not in page.lower()
    thumbnail = lxml_html.fromstring(page).xpath('//img[@src="https://i.ytimg.com/vi/Xq3m8cWT0yE/maxresdefault.jpg"]')
    assert thumbnail and thumbnail[0].get("alt").startswith("Video: ")


def test_a_story_appears_once_in_the_best_section(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    subscribe(config, "ada@example.org", "computer-vision,ai")
    assert cli(config, "digest", "--date", DATE)[0] == 0
    [eml] = (tmp_path / "out/outbox/2020-06-18").glob("*.eml")
    text, page = parts(email.message_from_bytes(eml.read_bytes(), policy=default))  # type: ignore[arg-type]
    titles = story_titles(page)
    assert len(titles) == len(set(titles)) == 3
    sections = re.findall(r"^== (.+) ==$", text, flags=re.M)
    # Each story sits where it ranks best: Forbes is first in Computer Vision (second in
    # AI), the BBC second there (third in AI), Mic first in AI.
    assert sections == ["COMPUTER VISION", "AI"]
    assert titles == [
        "IBM, Microsoft And Amazon Not Letting Police Use Their Facial Recognition Technology",
        "Microsoft bars facial recognition sales to police",
        "Amazon is banning cops from using its facial recognition tech for one year",
    ]


def test_a_story_is_one_story_across_sections_whichever_record_leads_it(tmp_path: Path) -> None:
    # The BBC leads its story in Computer Vision; the Washington Post, which names the BBC
    # in `related` but is not in Computer Vision, leads the same story in AWS AI. Shown in
    # one section, the story must not come back in another under its other record.
    config = write_config(tmp_path)
    subscribe(config, "ada@example.org", "computer-vision,ai,aws-ai")
    assert cli(config, "digest", "--date", DATE)[0] == 0
    [eml] = (tmp_path / "out/outbox/2020-06-18").glob("*.eml")
    _, page = parts(email.message_from_bytes(eml.read_bytes(), policy=default))  # type: ignore[arg-type]
    titles = story_titles(page)
    assert len(titles) == 3, titles
    assert not any(title.startswith("The Technology 202") for title in titles)  # the Post's record


def test_no_new_stories_means_no_email_and_the_run_says_so(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    subscribe(config, "ada@example.org", "ai")
    code, _out, err = cli(config, "digest", "--date", "2020-07-01T00:00:00Z")
    assert code == 0
    assert "no new stories for ada@example.org: no email" in err
    assert not (tmp_path / "out/outbox").exists()


def test_weekly_covers_seven_days(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    subscribe(config, "ada@example.org", "ai", "weekly")
    # The newest seed is Mic's, of 15 June 18:03.
    assert "no new stories" in cli(config, "digest", "--date", "2020-06-23T00:00:00Z")[2]
    code, out, err = cli(config, "digest", "--date", "2020-06-22T00:00:00Z")
    assert code == 0 and "wrote 1 message" in out, out + err


def test_web_copy_and_archive_feed(tmp_path: Path) -> None:
    import feedparser
    config = write_config(tmp_path)
    subscribe(config, "ada@example.org", "ai")
    cli(config, "digest", "--date", DATE)
    web = (tmp_path / "out/newsletter/2020-06-18/ai-weekly/index.html").read_text()
    assert "unsubscribe" not in web.lower() and "token" not in web  # nothing personal in public
    [eml] = (tmp_path / "out/outbox/2020-06-18").glob("*.eml")
    _, page = parts(email.message_from_bytes(eml.read_bytes(), policy=default))  # type: ignore[arg-type]
    links = lxml_html.fromstring(page).xpath('//a[normalize-space(.)="View in browser"]/@href')
    assert set(links) == {"https://news.example.org/newsletter/2020-06-18/ai-weekly/"}
    archive = feedparser.parse((tmp_path / "out/newsletter/atom.xml").read_bytes())
    assert not archive.bozo
    assert [e.link for e in archive.entries] == ["https://news.example.org/newsletter/2020-06-18/ai-weekly/"]
    assert archive.entries[0].title.startswith("AI Digest · 18 Jun 2020: Amazon is banning cops")


def test_a_digest_sweeps_the_temporary_files_a_killed_digest_left(tmp_path: Path) -> None:
    """A digest killed mid-write leaves a hidden ``.<name>.<pid>.<n>.tmp`` beside the file
    it was writing; the next digest deletes those of dead processes in its own folders
    (outbox, sign-up confirmations, web copies), and nothing else, nor through a link."""
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    config = write_config(tmp_path)
    subscribe(config, "ada@example.org", "ai")
    assert cli(config, "digest", "--date", DATE)[0] == 0
    killed = {"outbox/2020-06-18": "ada-at-example.org.eml", "outbox/confirmations": "bob-at-example.org.eml",
              "newsletter": "atom.xml", "newsletter/2020-06-18/ai-weekly": "index.html"}
    stays = [f"outbox/2020-06-18/.x.eml.{os.getpid()}.0.tmp",  # a live process's, mid-write
             "outbox/2020-06-18/.notes.tmp", "outbox/2020-06-18/keep.eml",  # not the pattern
             f"topics/ai/.rss.xml.{dead}.0.tmp",  # the build's folder: the build sweeps it
             f"outbox/2020-06-18/a/b/.deep.eml.{dead}.0.tmp"]  # deeper than the digest writes
    for folder, name in killed.items():
        (out / folder).mkdir(parents=True, exist_ok=True)
        (out / folder / f".{name}.{dead}.3.tmp").write_bytes(b"half a mess")
    for path in stays:
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        (out / path).write_bytes(b"kept")
    elsewhere.mkdir()
    (elsewhere / f".x.eml.{dead}.0.tmp").write_bytes(b"not ours")
    (out / "outbox/linked").symlink_to(elsewhere)

    code, stdout, stderr = cli(config, "digest", "--date", DATE)

    assert code == 0, stdout + stderr
    left = {str(p.relative_to(out)) for p in out.rglob(".*.tmp")}
    assert left == {path for path in stays if path.endswith(".tmp")}
    assert (out / "outbox/2020-06-18/keep.eml").read_bytes() == b"kept"
    assert (elsewhere / f".x.eml.{dead}.0.tmp").read_bytes() == b"not ours"
    assert (out / "newsletter/2020-06-18/ai-weekly/index.html").is_file()


def test_preview_renders_without_a_subscriber(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    code, out, err = cli(config, "digest", "--preview", "--topics", "ai", "--cadence", "weekly", "--date", DATE)
    assert code == 0, out + err
    assert "Preview of 3 stories written to" in out
    assert (tmp_path / "out/preview/2020-06-18/ai-weekly/index.html").is_file()
    assert not (tmp_path / "out/newsletter").exists()  # a preview is never published


def write_big_edition(seeds: Path) -> list[str]:
    """240 long stories in 8 topics, all on 17 June: 20 a topic makes an email far over
    Gmail's clipping size."""
    topics = ["AI", "Robotics", "Computer Vision", "AI Ethics", "AI in Healthcare", "NLP", "Chips", "Policy"]
    for i in range(240):
        write_record(seeds / f"{i}.md", title=f"Story {i}: " + "a long and detailed headline " * 3,
                     excerpt="A long excerpt that goes on. " * 20, webUrl=f"https://example.com/{i}",
                     publishedDateTime=f"2020-06-17T{i % 24:02d}:{i % 60:02d}:00Z", quality=100 + i,
                     topics=[topics[i % 8], topics[(i + 3) % 8]],
                     provider={"name": f"Outlet {i % 30}", "domain": f"outlet{i % 30}.example.com"})
    return topics


@pytest.mark.slow
def test_a_full_edition_stays_under_gmails_clipping_size(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    topics = write_big_edition(seeds)
    config = write_config(tmp_path, seeds=seeds, digest_items_per_topic=20)
    subscribe(config, "ada@example.org", ",".join(topics))
    code, out, err = cli(config, "digest", "--date", DATE)
    assert code == 0, out + err
    [eml] = (tmp_path / "out/outbox/2020-06-18").glob("*.eml")
    _, page = parts(email.message_from_bytes(eml.read_bytes(), policy=default))  # type: ignore[arg-type]
    assert len(page.encode()) < 100_000
    assert len(story_titles(page)) >= 15  # trimmed to fit, still a full edition
    assert "Unsubscribe" in page  # the footer survives: Gmail would clip it


def test_email_html_is_safe_and_every_image_is_described(tmp_path: Path) -> None:
    config = write_config(tmp_path, seeds=tmp_path / "seeds")
    (tmp_path / "seeds").mkdir()
    for record in SEEDS.glob("*.md"):
        (tmp_path / "seeds" / record.name).write_text(record.read_text())
    (tmp_path / "seeds/evil.md").write_text(
        '---\ntitle: "<script>alert(1)</script>Robots & <b>rights</b> < wrongs"\n'
        'excerpt: "<form action=https://evil.example><input></form>Ok <iframe src=x></iframe> \\u0007 bell"\n'
        "publishedDateTime: 2020-06-17T20:00:00Z\nwebUrl: https://example.com/evil\nquality: 500\n"
        "topics: [AI]\nimages:\n  - url: \"https://example.com/i.jpg\\\" onerror=\\\"alert(2)\"\n"
        "    width: 10\n    height: 10\n---\n")
    subscribe(config, "ada@example.org", "ai")
    code, out, err = cli(config, "digest", "--date", DATE)
    assert code == 0, out + err
    [eml] = (tmp_path / "out/outbox/2020-06-18").glob("*.eml")
    _, page = parts(email.message_from_bytes(eml.read_bytes(), policy=default))  # type: ignore[arg-type]
    tree = lxml_html.fromstring(page)
    assert not tree.xpath("//script | //iframe | //form | //input | //link[@rel='stylesheet'] | //object | //embed")
    assert not [a for a in tree.iter() if any(k.startswith("on") for k in a.attrib)]
    for img in tree.xpath("//img"):
        assert img.get("alt") and img.get("width"), lxml_html.tostring(img)
    assert "Robots & rights < wrongs" in story_titles(page)


# --------------------------------------------------------------------- the sent email


def test_sent_email_headers_parts_and_unsubscribe_token(tmp_path: Path) -> None:
    with smtp_server() as (server, port):
        config = write_config(tmp_path, port)
        subscribe(config, "ada@example.org", "ai")
        code, out, err = cli(config, "digest", "--date", DATE, "--send")
        assert code == 0, out + err
        assert "Sent 1 message" in out
        [message] = server.received()
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in message.iter_parts())
    assert message["From"] == "AI Digest <digest@news.example.org>"
    assert message["Reply-To"] == "editors@news.example.org"
    assert message["To"] == "ada@example.org"
    assert message["Subject"] == (
        "AI Digest · 18 Jun 2020: Amazon is banning cops from using its facial recognition tech for one year")
    assert message["Date"] and email.utils.parsedate_to_datetime(message["Date"]).tzinfo is not None
    assert re.fullmatch(r"<weekly-2020-06-18\.[0-9a-f]{24}@news\.example\.org>", message["Message-ID"])
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    raw = message.as_bytes(policy=default.clone(max_line_length=998))
    header_line = next(line for line in raw.split(b"\n") if line.startswith(b"List-Unsubscribe:"))
    assert b"=?" not in header_line  # one unencoded line, as Gmail and Outlook need
    https, mailto = re.findall(r"<([^>]+)>", message["List-Unsubscribe"])
    token = parse_qs(urlsplit(https).query)["token"][0]
    assert https.startswith("https://news.example.org/unsubscribe?token=")
    assert mailto == f"mailto:digest@news.example.org?subject=unsubscribe%20{token}"
    engine = state.open_state(f"sqlite:///{tmp_path / 'state.db'}")
    subscriber_id = token_subscriber(token)
    assert subscriber_id is not None
    person = state.get_subscriber(engine, subscriber_id)
    assert person is not None and person.email == "ada@example.org"
    assert verify_token(SECRET, token, person.id, person.email)
    assert not verify_token(SECRET, token[:-1] + ("0" if token[-1] != "0" else "1"), person.id, person.email)

    text, page = parts(message)
    assert https in text
    tree = lxml_html.fromstring(page)
    assert https in tree.xpath("//a/@href")
    assert "Amazon is banning cops" in text and "Amazon is banning cops" in page
    preheader = tree.xpath('//div[contains(@style,"display:none")]')
    assert preheader and "Also: IBM, Microsoft And Amazon Not Letting Police" in preheader[0].text_content()


def test_running_again_sends_nothing_new(tmp_path: Path) -> None:
    with smtp_server() as (server, port):
        config = write_config(tmp_path, port)
        subscribe(config, "ada@example.org", "ai")
        subscribe(config, "bob@example.org", "computer-vision")
        assert cli(config, "digest", "--date", DATE, "--send")[0] == 0
        code, out, _ = cli(config, "digest", "--date", "2020-06-18T06:00:00Z", "--send")
        assert code == 0 and "Sent 0 messages, 0 deferred, 0 failed, 0 suppressed; 2 already had this edition" in out
        assert sorted(m["To"] for m in server.received()) == ["ada@example.org", "bob@example.org"]


def test_temporary_refusals_are_retried_and_permanent_ones_recorded(tmp_path: Path) -> None:
    with smtp_server() as (server, port):
        config = write_config(tmp_path, port)
        for address in ("ada@example.org", "bob@example.org", "cy@example.org"):
            subscribe(config, address, "ai")
        server.scripted["ada@example.org"] = ["451 4.3.0 Try again later"]
        server.scripted["bob@example.org"] = ["550 5.1.1 No such user"]
        server.scripted["cy@example.org"] = ["452 4.2.2 Mailbox full"] * 5
        code, _, err = cli(config, "digest", "--date", DATE, "--send")
        assert code == 1
        assert [m["To"] for m in server.received()] == ["ada@example.org"]
        assert "failed  bob@example.org: 550 5.1.1 No such user" in err
        assert "deferred cy@example.org: 452 4.2.2 Mailbox full (the next run tries again)" in err
        server.scripted.clear()
        code, out, err = cli(config, "digest", "--date", DATE, "--send")
        assert sorted(m["To"] for m in server.received()) == ["ada@example.org", "cy@example.org"]
        # bob bounced: suppressed from now on, and yesterday's failure fails no later run
        assert code == 0 and "Sent 1 message, 0 deferred, 0 failed, 1 suppressed;" in out, out + err


def test_unsubscribed_people_get_nothing(tmp_path: Path) -> None:
    with smtp_server() as (server, port):
        config = write_config(tmp_path, port)
        subscribe(config, "ada@example.org", "ai")
        subscribe(config, "bob@example.org", "ai")
        engine = state.open_state(f"sqlite:///{tmp_path / 'state.db'}")
        bob = next(s for s in state.list_subscribers(engine) if s.email == "bob@example.org")
        state.unsubscribe(engine, bob.id, time_now())
        assert cli(config, "digest", "--date", DATE, "--send")[0] == 0
        assert [m["To"] for m in server.received()] == ["ada@example.org"]


def time_now():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime
    return datetime.now(UTC)


@pytest.mark.slow
def test_a_send_killed_mid_way_resumes_without_duplicates(tmp_path: Path) -> None:
    """SIGKILL a real sending process part-way, start it again: everyone gets the edition,
    nobody has two different Message-IDs, at most the one in-flight message arrives twice."""
    with smtp_server() as (server, port):
        config = write_config(tmp_path, port, rate=25)
        people = tmp_path / "people.csv"
        addresses = [f"reader{i:02d}@example.org" for i in range(40)]
        people.write_text("email,topics,cadence\n" + "".join(f"{a},ai,weekly\n" for a in addresses))
        assert cli(config, "subscribers", "import", str(people))[0] == 0
        command = [sys.executable, "-m", "feeds", "digest", "--date", DATE, "--send", "--config", str(config)]
        first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while len(server.received()) < 10 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.005)
        first.send_signal(signal.SIGKILL)
        first.wait()
        before = len(server.received())
        assert 10 <= before < 40, "the kill should land part-way"

        second = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert second.returncode == 0, second.stderr
        received = server.received()
    by_person: dict[str, set[str]] = {}
    copies: dict[str, int] = {}
    for message in received:
        by_person.setdefault(message["To"], set()).add(message["Message-ID"])
        copies[message["To"]] = copies.get(message["To"], 0) + 1
    assert sorted(by_person) == addresses
    assert all(len(ids) == 1 for ids in by_person.values())
    assert sum(n - 1 for n in copies.values()) <= 1


def test_without_send_nothing_leaves_the_machine(tmp_path: Path) -> None:
    with smtp_server() as (server, port):
        config = write_config(tmp_path, port)
        subscribe(config, "ada@example.org", "ai")
        assert cli(config, "digest", "--date", DATE)[0] == 0
        assert server.received() == []
    [eml] = (tmp_path / "out/outbox/2020-06-18").glob("*.eml")
    assert eml.name == "ada-at-example.org.eml"


def test_secret_from_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from feeds.config import load_config
    monkeypatch.setenv("FEEDS_SECRET", "x" * 20)
    monkeypatch.setenv("FEEDS_SMTP_PASSWORD", "hunter2")
    config = load_config(write_config(tmp_path))
    assert config.secret == "x" * 20 and config.smtp.password == "hunter2"
    assert "hunter2" not in repr(config) and "x" * 20 not in repr(config)
