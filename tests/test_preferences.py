"""Subscribers manage themselves: the preferences token and link, the preferences page,
pausing, and the next edition following their changes."""

from __future__ import annotations

import email
import shutil
from datetime import UTC, date, datetime, time, timedelta
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from lxml import html as lxml_html

from feeds import state
from feeds.api.digests import preferences_url
from feeds.api.preferences import TopicChoices
from feeds.api.signup import published_topics
from feeds.config import load_config
from feeds.digest import preferences_token, unsubscribe_token, verify_preferences_token
from tests.conftest import run_cli, write_record
from tests.test_digest import SECRET, cli, parts, subscribe, write_config
from tests.test_serve import Reply, Site, request
from tests.test_serve import site as served_site  # noqa: F401  (a fixture: pytest finds it by this name)

DATE = "2020-06-18T00:00:00Z"


def outbox(tmp_path: Path, day: str = "2020-06-18") -> dict[str, EmailMessage]:
    """The digest messages written for ``day``, by recipient."""
    messages = [email.message_from_bytes(eml.read_bytes(), policy=default)
                for eml in sorted((tmp_path / "out/outbox" / day).glob("*.eml"))]
    return {str(m["To"]): m for m in messages}  # type: ignore[misc]


def preferences_link(message: EmailMessage) -> str:
    """The preferences link of a digest, the same in its text and HTML parts."""
    text, page = parts(message)
    [html_link] = [a.get("href") for a in lxml_html.fromstring(page).xpath("//a")
                   if a.text_content().strip() == "Preferences"]
    [text_link] = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("Change topics")]
    assert html_link == text_link
    return text_link


# --------------------------------------------------------------------- the token


def test_preferences_token_names_its_subscriber_and_nothing_else() -> None:
    addresses = {7: "ada@example.org", 8: "bob@example.org"}
    token = preferences_token(SECRET, 7, "Ada@Example.org")
    assert verify_preferences_token(SECRET, token, addresses.get) == 7
    # Another secret, another address for the id (erased or recycled), no such id,
    # a changed character or id: refused.
    assert verify_preferences_token("another-secret-that-is-long-enough", token, addresses.get) is None
    assert verify_preferences_token(SECRET, token, {7: "eve@example.org"}.get) is None
    assert verify_preferences_token(SECRET, token, {}.get) is None
    flipped = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert verify_preferences_token(SECRET, flipped, addresses.get) is None
    assert verify_preferences_token(SECRET, "8" + token[1:], addresses.get) is None
    for junk in ("", "7", "7.", "x.y", token + "0", " " + token):
        assert verify_preferences_token(SECRET, junk, addresses.get) is None


def test_preferences_token_is_not_an_unsubscribe_token() -> None:
    """A distinct HMAC purpose: one link's token never works for the other's page."""
    prefs = preferences_token(SECRET, 7, "ada@example.org")
    unsub = unsubscribe_token(SECRET, 7, "ada@example.org")
    assert prefs != unsub
    assert verify_preferences_token(SECRET, unsub, {7: "ada@example.org"}.get) is None


def test_preferences_url_is_under_base_url(tmp_path: Path) -> None:
    (tmp_path / "feeds.yaml").write_text("base_url: https://news.example.org/feeds/\n", encoding="utf-8")
    config = load_config(tmp_path / "feeds.yaml")
    assert preferences_url(config, "7.abc") == "https://news.example.org/feeds/preferences?token=7.abc"


# --------------------------------------------------------------------- the digest link


def test_every_digest_links_to_its_subscribers_preferences(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    subscribe(config, "ada@example.org", "ai")
    subscribe(config, "bob@example.org", "computer-vision")
    code, out, err = cli(config, "digest", "--date", DATE)
    assert code == 0, out + err
    messages = outbox(tmp_path)
    assert set(messages) == {"ada@example.org", "bob@example.org"}
    engine = state.open_state(f"sqlite:///{tmp_path / 'state.db'}")
    emails = {p.id: p.email for p in state.list_subscribers(engine)}
    for address, message in messages.items():
        link = urlsplit(preferences_link(message))
        assert (link.scheme, link.netloc, link.path) == ("https", "news.example.org", "/preferences")
        [token] = parse_qs(link.query)["token"]
        subscriber_id = verify_preferences_token(SECRET, token, emails.get)
        assert subscriber_id is not None and emails[subscriber_id] == address


# --------------------------------------------------------------------- the page


@pytest.fixture
def site(served_site: Site) -> Site:  # noqa: F811  (the imported fixture, by name)
    """A real `feeds serve` on loopback, ada and bob subscribed (weekly, AI), and their
    digests of the week to 18 June 2020 in the outbox (see tests/test_serve.py)."""
    return served_site


def page_link(site: Site, address: str) -> str:
    """The preferences link of ``address``'s digest in the site's outbox (the fixture ran one)."""
    return preferences_link(outbox(site.tmp)[address])


def post(url: str, fields: list[tuple[str, str]], *, origin: str | None = None,
         headers: dict[str, str] | None = None) -> Reply:
    """Submit the form as a browser on the page's own origin would (unless told otherwise)."""
    split = urlsplit(url)
    sent = {"content-type": "application/x-www-form-urlencoded",
            "origin": origin or f"{split.scheme}://{split.netloc}", **(headers or {})}
    return request(f"{split.scheme}://{split.netloc}{split.path}", method="POST", headers=sent,
                   data=urlencode(fields).encode())


def form_of(reply: Reply) -> lxml_html.HtmlElement:
    tree = lxml_html.fromstring(reply.body)
    [form] = [f for f in tree.xpath("//form") if f.xpath(".//input[@name='topics']")]
    return form


def checked(form: lxml_html.HtmlElement, name: str) -> list[str]:
    return [i.get("value") for i in form.xpath(f".//input[@name='{name}']") if i.get("checked") is not None]


def fields_of(form: lxml_html.HtmlElement, **changes: object) -> list[tuple[str, str]]:
    """The form's fields as the page filled them in, with ``changes`` (lists for
    repeated fields) made as a person would make them."""
    fields = {"token": [form.xpath(".//input[@name='token']")[0].get("value")],
              "topics": checked(form, "topics"), "cadence": checked(form, "cadence"),
              "paused_until": [form.xpath(".//input[@name='paused_until']")[0].get("value") or ""],
              "action": ["save"]}
    fields.update({k: v if isinstance(v, list) else [str(v)] for k, v in changes.items()})
    return [(name, value) for name, values in fields.items() for value in values]


def person(site: Site, address: str) -> state.Subscriber:
    found = state.find_subscriber(state.open_state(load_config(site.config).state_db), address)
    assert found is not None
    return found


def sections(message: EmailMessage) -> list[str]:
    """The topic headings of a digest's text part (upper case there), in order."""
    text, _ = parts(message)
    return [line.strip("= ") for line in text.splitlines() if line.startswith("== ")]


def test_page_shows_the_subscribers_choices_with_labels_and_groups(site: Site) -> None:
    reply = request(page_link(site, "ada@example.org"))
    assert reply.status == 200 and reply.headers["cache-control"] == "no-store"
    tree = lxml_html.fromstring(reply.body)
    assert "ada@example.org" in tree.xpath("string(//main)")
    form = form_of(reply)
    topics = [i.get("value") for i in form.xpath(".//input[@name='topics']")]
    assert topics[0] == "all" and "ai" in topics and len(topics) > 2  # every topic the site has
    assert checked(form, "topics") == ["ai"] and checked(form, "cadence") == ["weekly"]
    assert [i.get("type") for i in form.xpath(".//input[@name='paused_until']")] == ["date"]
    assert form.xpath(".//button[@value]/@value") == ["save", "unsubscribe"]
    assert form.xpath(".//fieldset/legend/text()") == ["Topics", "How often", "Pause"]
    # Every visible control has a label: wrapped in one, or named by one's for=.
    for control in form.xpath(".//input[not(@type='hidden')]"):
        assert control.xpath("ancestor::label") or tree.xpath(f"//label[@for='{control.get('id')}']")
    assert not tree.xpath("//script")  # works without JavaScript: there is none


def test_a_change_of_topics_and_cadence_shows_on_the_next_edition(site: Site) -> None:
    before = outbox(site.tmp)["ada@example.org"]
    assert sections(before) == ["AI"] and "Weekly digest" in parts(before)[0]
    form = form_of(request(page_link(site, "ada@example.org")))
    reply = post(page_link(site, "ada@example.org"), fields_of(form, topics=["computer-vision"], cadence="daily"))
    assert reply.status == 200, reply.body
    after_form = form_of(reply)
    assert checked(after_form, "topics") == ["computer-vision"] and checked(after_form, "cadence") == ["daily"]
    assert "Saved" in lxml_html.fromstring(reply.body).xpath("string(//*[@role='status'])")
    shutil.rmtree(site.tmp / "out/outbox")
    # The seeds' one computer-vision story of a day: 13 June, 01:29.
    code, out, err = cli(site.config, "digest", "--date", "2020-06-13T12:00:00Z")
    assert code == 0, out + err
    after = outbox(site.tmp, "2020-06-13")
    assert sections(after["ada@example.org"]) == ["COMPUTER VISION"]
    assert "Daily digest" in parts(after["ada@example.org"])[0]
    assert sections(after["bob@example.org"]) == ["AI"]  # nobody else's choices changed


def test_errors_are_tied_to_their_fields_and_change_nothing(site: Site) -> None:
    link = page_link(site, "ada@example.org")
    form = form_of(request(link))
    reply = post(link, fields_of(form, topics=[], paused_until="2001-01-01"))
    assert reply.status == 400
    form = form_of(reply)
    tree = lxml_html.fromstring(reply.body)
    [topics_group] = form.xpath(".//fieldset[legend='Topics']")
    assert tree.xpath(f"string(//*[@id='{topics_group.get('aria-describedby')}'])") == "Choose at least one topic."
    [date] = form.xpath(".//input[@name='paused_until']")
    described = [tree.xpath(f"string(//*[@id='{i}'])") for i in date.get("aria-describedby").split()]
    assert "Choose a day after today." in described and date.get("aria-invalid") == "true"
    assert date.get("value") == "2001-01-01"  # their input, kept for them to correct
    ada = person(site, "ada@example.org")
    assert (ada.topics, ada.status) == (("ai",), state.ACTIVE)


@pytest.mark.parametrize("headers", [
    {"origin": "https://evil.example"},
    {"origin": "https://evil.example", "sec-fetch-site": "cross-site"},
    {"sec-fetch-site": "same-site"},  # a sibling subdomain's page, with no Origin given
])
def test_a_cross_site_post_changes_nothing(site: Site, headers: dict[str, str]) -> None:
    link = page_link(site, "ada@example.org")
    form = form_of(request(link))
    reply = request(urlsplit(link)._replace(query="").geturl(), method="POST",
                    headers={"content-type": "application/x-www-form-urlencoded", **headers},
                    data=urlencode(fields_of(form, action="unsubscribe")).encode())
    assert reply.status == 403
    assert person(site, "ada@example.org").active


@pytest.mark.parametrize("token", ["", "1", "1.abc", None])
def test_a_bad_or_foreign_token_gets_a_4xx_and_changes_nothing(site: Site, token: str | None) -> None:
    link = page_link(site, "ada@example.org")
    if token is None:  # the unsubscribe token of the same person: the wrong purpose
        token = parse_qs(urlsplit(outbox(site.tmp)["ada@example.org"]["List-Unsubscribe"].split("<")[1]
                                  .rstrip(">, ")).query)["token"][0]
    assert request(urlsplit(link)._replace(query=f"token={token}").geturl()).status in (400, 403)
    form = form_of(request(link))
    assert post(link, [*[f for f in fields_of(form, action="unsubscribe") if f[0] != "token"],
                       ("token", token)]).status in (400, 403)
    assert person(site, "ada@example.org").active


def test_unsubscribe_then_resubscribe_on_the_page(site: Site) -> None:
    link = page_link(site, "ada@example.org")
    form = form_of(request(link))
    reply = post(link, fields_of(form, action="unsubscribe"))
    assert reply.status == 200 and person(site, "ada@example.org").status == state.UNSUBSCRIBED
    tree = lxml_html.fromstring(reply.body)
    assert tree.xpath("//button/@value") == ["resubscribe"]
    token = tree.xpath("//input[@name='token']/@value")[0]
    reply = post(link, [("token", token), ("action", "resubscribe")])
    assert reply.status == 200 and person(site, "ada@example.org").active
    engine = state.open_state(load_config(site.config).state_db)
    history = state.status_history(engine, person(site, "ada@example.org").id)
    assert [(c.status, c.source) for c in history] == [
        ("active", "operator"), ("unsubscribed", "preferences"), ("active", "preferences")]


@pytest.mark.parametrize("status, source", [("bounced", "bounce"), ("complained", "complaint"),
                                            ("unsubscribed", "operator")])
def test_who_left_otherwise_cannot_resubscribe_themselves(site: Site, status: str, source: str) -> None:
    engine = state.open_state(load_config(site.config).state_db)
    ada = person(site, "ada@example.org")
    state.set_status(engine, ada.id, status, source=source, now=datetime.now(UTC))
    link = page_link(site, "ada@example.org")
    reply = request(link)
    assert reply.status == 200 and not lxml_html.fromstring(reply.body).xpath("//button")
    token = parse_qs(urlsplit(link).query)["token"][0]
    for action in ("resubscribe", "save"):
        post(link, [("token", token), ("action", action), ("topics", "ai"), ("cadence", "weekly")])
        assert person(site, "ada@example.org").status == status


def test_a_pause_skips_digests_until_its_day_then_they_resume_with_history(site: Site) -> None:
    """The server reads the real clock, so the pause is set from today; the digest runs
    are told their day with --date."""
    until = datetime.now(UTC).date() + timedelta(days=20)
    link = page_link(site, "ada@example.org")
    reply = post(link, fields_of(form_of(request(link)), paused_until=until.isoformat()))
    assert reply.status == 200
    assert form_of(reply).xpath(".//input[@name='paused_until']/@value") == [until.isoformat()]
    ada = person(site, "ada@example.org")
    assert (ada.status, ada.paused_until) == (state.PAUSED, until)

    shutil.rmtree(site.tmp / "out/outbox")
    code, out, err = cli(site.config, "digest", "--date", DATE)
    assert code == 0, out + err
    assert set(outbox(site.tmp)) == {"bob@example.org"}
    assert f"paused  ada@example.org: until {until}" in err

    day_before = datetime.combine(until - timedelta(days=1), time(12), UTC)
    assert cli(site.config, "digest", "--date", day_before.isoformat())[0] == 0
    assert person(site, "ada@example.org").status == state.PAUSED
    code, out, err = cli(site.config, "digest", "--date", datetime.combine(until, time(12), UTC).isoformat())
    assert code == 0, out + err
    assert f"resumed ada@example.org: paused until {until}" in err
    assert person(site, "ada@example.org").active
    engine = state.open_state(load_config(site.config).state_db)
    history = state.status_history(engine, ada.id)
    assert [(c.status, c.source) for c in history][-2:] == [("paused", "preferences"), ("active", "pause-ended")]
    # And the one after it is mailed again, as the seeds' week shows.
    shutil.rmtree(site.tmp / "out/outbox", ignore_errors=True)
    assert cli(site.config, "digest", "--date", DATE)[0] == 0
    assert "ada@example.org" in outbox(site.tmp)


# --------------------------------------------------------------------- statuses in the list


def test_subscribers_list_shows_every_status_and_with_history_its_changes(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    for address in ("ada@example.org", "bob@example.org", "cy@example.org", "dee@example.org"):
        subscribe(config, address, "ai", "weekly")
    engine = state.open_state(f"sqlite:///{tmp_path / 'state.db'}")
    ids = {p.email: p.id for p in state.list_subscribers(engine)}
    now = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)  # after `add`'s, in the history
    state.pause(engine, ids["bob@example.org"], date(2020, 7, 1), now=now)
    state.set_status(engine, ids["cy@example.org"], state.BOUNCED, source="bounce", now=now,
                     reason="550 5.1.1 user unknown")
    state.unsubscribe(engine, ids["dee@example.org"], now)

    code, out, err = cli(config, "subscribers", "list")
    assert code == 0, out + err
    statuses = {line.split("\t")[0]: line.rsplit("  (", 1)[1].rstrip(")") for line in out.splitlines()}
    assert statuses == {"ada@example.org": "active", "bob@example.org": "paused until 2020-07-01",
                        "cy@example.org": "bounced: 550 5.1.1 user unknown", "dee@example.org": "unsubscribed"}
    assert "4 subscribers, 1 active, 1 bounced, 1 paused, 1 unsubscribed." in err

    code, out, err = cli(config, "subscribers", "list", "--history")
    assert code == 0, out + err
    lines = out.splitlines()
    bob = lines.index(next(line for line in lines if line.startswith("bob@example.org\t")))
    assert lines[bob + 2] == f"  {now:%Y-%m-%dT%H:%M:%SZ}  paused (preferences)  until 2020-07-01"
    assert lines[bob + 1].split("  ")[2:] == ["active (operator)", "subscribed"]


def test_a_paused_subscriber_can_still_leave_in_one_click_and_be_updated_by_the_operator(site: Site) -> None:
    until = datetime.now(UTC).date() + timedelta(days=10)
    link = page_link(site, "ada@example.org")
    assert post(link, fields_of(form_of(request(link)), paused_until=until.isoformat())).status == 200
    code, out, err = cli(site.config, "subscribers", "add", "ada@example.org", "--topics", "ai,computer-vision",
                         "--cadence", "weekly")
    assert code == 0 and out.startswith("Updated ada@example.org"), out + err
    ada = person(site, "ada@example.org")
    assert (ada.status, ada.paused_until, ada.topics) == (state.PAUSED, until, ("ai", "computer-vision"))
    unsubscribe = outbox(site.tmp)["ada@example.org"]["List-Unsubscribe"].split("<")[1].split(">")[0]
    confirm = lxml_html.fromstring(request(unsubscribe).body)
    assert confirm.xpath("//form//input[@name='List-Unsubscribe']/@value") == ["One-Click"]
    reply = request(unsubscribe, method="POST", data=b"List-Unsubscribe=One-Click",
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert reply.status == 200 and person(site, "ada@example.org").status == state.UNSUBSCRIBED


def test_the_page_offers_the_topics_of_the_latest_build(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    write_record(seeds / "a.md", title="Robots", webUrl="https://example.com/a", topics=["AI"])
    config_path = write_config(tmp_path, seeds=seeds)
    assert run_cli("build", "--config", str(config_path)).exit_code == 0
    choices = TopicChoices(load_config(config_path).out)
    assert list(choices.get()[0]) == ["all", "ai"]
    write_record(seeds / "b.md", title="Ships", webUrl="https://example.com/b", topics=["Robotics"])
    assert list(choices.get()[0]) == ["all", "ai"]  # what the site has is what the last build made
    assert run_cli("build", "--config", str(config_path)).exit_code == 0
    assert list(choices.get()[0]) == ["all", "ai", "robotics"]


def test_the_page_offers_what_the_build_published_without_reading_the_records(tmp_path: Path) -> None:
    """The same list as the sign-up form (both read the build's feeds.opml): a server on
    another machine, or records moved away, changes nothing; before any build, nothing."""
    seeds = tmp_path / "seeds"
    write_record(seeds / "a.md", title="Robots", webUrl="https://example.com/a", topics=["AI"])
    config_path = write_config(tmp_path, seeds=seeds)
    config = load_config(config_path)
    assert TopicChoices(config.out).get() == ({}, {})
    assert run_cli("build", "--config", str(config_path)).exit_code == 0
    shutil.rmtree(seeds)
    topics, names = TopicChoices(config.out).get()
    assert topics == published_topics(config.out) == {"all": "All topics", "ai": "AI"}
    assert names == {"all topics": "all", "ai": "ai"}


@pytest.mark.parametrize("padding", [
    [("topics", "ai")] * 300,  # more fields than any form here takes (the sign-up form's limit)
    [("note", "x" * 70_000)],  # more bytes than any form here takes
])
def test_a_form_past_the_limits_of_every_form_changes_nothing(site: Site, padding: list[tuple[str, str]]) -> None:
    """The preferences form is read with the sign-up form's limits, not laxer ones."""
    link = page_link(site, "ada@example.org")
    form = form_of(request(link))
    reply = post(link, [*fields_of(form, topics=[], cadence="daily"), *padding])
    assert reply.status == 400
    assert "Nothing was changed" in lxml_html.fromstring(reply.body).xpath("string(//h1)")
    assert person(site, "ada@example.org").cadence == "weekly"


def test_a_button_the_page_does_not_have_changes_nothing(site: Site) -> None:
    """An unknown action was once taken for Save."""
    link = page_link(site, "ada@example.org")
    form = form_of(request(link))
    reply = post(link, fields_of(form, cadence="daily", action="erase-everything"))
    assert reply.status == 400
    assert "Nothing was changed" in lxml_html.fromstring(reply.body).xpath("string(//h1)")
    assert person(site, "ada@example.org").cadence == "weekly"


def test_a_pause_date_is_only_the_date_inputs_year_month_day(site: Site) -> None:
    """date.fromisoformat also takes 20261231 and 2026-W50-1; the date input sends neither."""
    day = datetime.now(UTC).date() + timedelta(days=10)
    link = page_link(site, "ada@example.org")
    form = form_of(request(link))
    year, week, weekday = day.isocalendar()
    for text in (day.strftime("%Y%m%d"), f"{year}-W{week:02d}-{weekday}"):
        reply = post(link, fields_of(form, paused_until=text))
        assert reply.status == 400, text
        assert lxml_html.fromstring(reply.body).xpath("string(//*[@id='paused_until-error'])")
        assert person(site, "ada@example.org").paused_until is None
    assert post(link, fields_of(form, paused_until=day.isoformat())).status == 200
    assert person(site, "ada@example.org").paused_until == day
