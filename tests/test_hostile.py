"""Inputs a hostile or careless world hands the real CLI: each costs only itself, in one
line naming it, and every good record still reaches every feed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import feedparser
from click.testing import CliRunner

from feeds.cli import cli
from tests.conftest import run_cli, write_record

NOW = "2020-06-18T00:00:00Z"


def _titles(out: Path) -> list[str]:
    feed = feedparser.parse((out / "topics/all/rss.xml").read_bytes())
    assert not feed.bozo, feed.bozo_exception
    return sorted(e.title for e in feed.entries)


def test_a_fifo_named_like_a_record_is_skipped_not_waited_on(tmp_path: Path) -> None:
    # Opening a FIFO for reading blocks until a writer comes: the build hung for good.
    # A subprocess with a timeout, so that the fault fails the test instead of hanging it.
    seeds = tmp_path / "seeds"
    write_record(seeds / "good.md", title="The good one", webUrl="https://example.com/good")
    os.mkfifo(seeds / "fifo.md")
    result = subprocess.run([sys.executable, "-m", "feeds", "build", "--seeds", str(seeds), "--out",
                             str(tmp_path / "out"), "--now", NOW], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [f"skipped {seeds}/fifo.md: cannot read: not a regular file"]
    assert _titles(tmp_path / "out") == ["The good one"]


def test_a_scalar_python_cannot_hold_is_the_records_fault_not_an_internal_error(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    write_record(seeds / "good.md", title="The good one", webUrl="https://example.com/good")
    head = "---\ntitle: T\nwebUrl: https://example.com/{n}\n"
    bad = {
        "year-zero.md": "publishedDateTime: 0000-01-01T00:00:00Z\n",
        "feb-30.md": "publishedDateTime: 2020-02-30\n",
        "offset-25h.md": "publishedDateTime: 2020-06-17T12:00:00+25:00\n",
        "digits.md": "publishedDateTime: 2020-06-17T12:00:00Z\nquality: " + "9" * 5000 + "\n",
    }
    for name, body in bad.items():
        (seeds / name).write_text(head.format(n=name) + body + "---\n", encoding="utf-8")
    (seeds / "hex.md").write_text(head.format(n="hex") + "publishedDateTime: 2020-06-17T12:00:00Z\n"
                                  "quality: 0x" + "f" * 5000 + "\n---\n", encoding="utf-8")
    result = run_cli("build", "--seeds", str(seeds), "--out", str(tmp_path / "out"), "--now", NOW)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert "internal error" not in result.stderr
    assert sorted(line.split(":")[0] for line in lines if line.startswith("skipped")) == sorted(
        f"skipped {seeds}/{name}" for name in bad)
    assert all("malformed YAML" in line for line in lines if line.startswith("skipped"))
    assert lines.count(f"note    {seeds}/hex.md: quality: too large a number; using 0") == 1
    assert _titles(tmp_path / "out") == ["T", "The good one"]


def test_a_file_name_with_a_line_break_is_named_on_one_line(tmp_path: Path) -> None:
    # A name such as "x.md\nskipped seeds/good.md: ..." could otherwise forge report lines.
    seeds = tmp_path / "seeds"
    write_record(seeds / "good.md", title="The good one", webUrl="https://example.com/good")
    write_record(seeds / "two\nlines.md", title="<b>Kept</b>", webUrl="https://example.com/kept")
    (seeds / "bad\rname.md").write_text("not a record", encoding="utf-8")
    result = run_cli("build", "--seeds", str(seeds), "--out", str(tmp_path / "out"), "--now", NOW)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"skipped {seeds}/bad\\x0dname.md: no front matter: the first line must be '---'",
        f"note    {seeds}/two\\x0alines.md: title: HTML removed",
    ]
    assert _titles(tmp_path / "out") == ["Kept", "The good one"]


def test_every_subscribers_command_names_a_state_database_that_is_not_one(tmp_path: Path) -> None:
    # A garbage file where the state database should be: one line naming it and status 1,
    # for list and remove as for add and import (they printed a traceback).
    (tmp_path / "state.db").write_bytes(os.urandom(4096))
    config = tmp_path / "feeds.yaml"
    config.write_text("state_db: state.db\n", encoding="utf-8")
    for args in (("list",), ("remove", "ada@example.org")):
        result = run_cli("subscribers", *args, "--config", str(config))
        assert result.exit_code == 1, result.output
        assert result.stderr.splitlines() == [
            "Error: state database sqlite:///" + str(tmp_path / "state.db")
            + ": DatabaseError: (sqlite3.DatabaseError) file is not a database"], result.stderr


def test_a_fifo_in_the_topics_folder_is_skipped_not_waited_on(tmp_path: Path) -> None:
    seeds, topics = tmp_path / "seeds", tmp_path / "topics"
    write_record(seeds / "good.md", title="The good one", webUrl="https://example.com/good", topics=["AI"])
    topics.mkdir()
    (topics / "ai.yaml").write_text("_id: ai\nname: AI\n", encoding="utf-8")
    os.mkfifo(topics / "fifo.yaml")
    config = tmp_path / "feeds.yaml"
    config.write_text("topics: topics\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "feeds", "build", "--config", str(config), "--seeds", str(seeds),
                             "--out", str(tmp_path / "out"), "--now", NOW], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [f"skipped {topics}/fifo.yaml: cannot read: not a regular file"]
    assert _titles(tmp_path / "out") == ["The good one"]
    assert (tmp_path / "out/topics/ai/rss.xml").is_file()


def test_explain_names_a_url_it_cannot_read_in_one_line(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    write_record(seeds / "good.md", title="The good one", webUrl="https://example.com/good")
    result = run_cli("explain", "http://[::1", "--seeds", str(seeds), "--now", NOW)
    assert result.exit_code == 1
    assert result.stderr == "Error: http://[::1: not a URL: Invalid IPv6 URL\n"


def test_one_message_that_kills_the_connection_does_not_hold_back_everyone_after_it(tmp_path: Path) -> None:
    # A server that drops the connection at one message's DATA (a filter crashing on it)
    # while it takes everyone else's: the run deferred that one and then stopped, and as a
    # deferred message is retried first, every later run stopped there too, for 72 hours.
    from tests.mail import smtp_server
    from tests.test_delivery import DATE, recipients, write_site
    from tests.test_digest import cli, subscribe

    with smtp_server() as (server, port):
        original = server.handle_DATA

        async def drop_poison(smtp: object, session: object, envelope: object) -> str:
            if "poison@example.org" in envelope.rcpt_tos:  # type: ignore[attr-defined]
                smtp.transport.close()  # type: ignore[attr-defined]
                return "451 closing"
            return await original(smtp, session, envelope)

        server.handle_DATA = drop_poison  # type: ignore[method-assign]
        config = write_site(tmp_path, port)
        for address in ("ada@example.org", "poison@example.org", "bob@example.org", "cy@example.org"):
            subscribe(config, address, "ai", "daily")
        for _ in range(2):
            code, out, err = cli(config, "digest", "--date", DATE, "--send")
            assert code == 0, out + err
            assert "deferred poison@example.org: connection lost" in err
        assert sorted(recipients(server)) == ["ada@example.org", "bob@example.org", "cy@example.org"]


def test_run_and_serve_name_a_state_database_that_is_not_one(tmp_path: Path) -> None:
    (tmp_path / "state.db").write_bytes(os.urandom(4096))
    config = tmp_path / "feeds.yaml"
    config.write_text("state_db: state.db\nserve: {port: 1}\n", encoding="utf-8")
    for command in (("run", "--no-serve"), ("serve",)):
        result = subprocess.run([sys.executable, "-m", "feeds", *command, "--config", str(config)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert result.stderr.splitlines()[-1] == (
            f"Error: state database sqlite:///{tmp_path / 'state.db'}: DatabaseError: "
            "(sqlite3.DatabaseError) file is not a database")


def test_a_daemon_that_cannot_listen_stops_and_says_so(tmp_path: Path) -> None:
    # It ran on without its HTTP server: every digest's one-click unsubscribe link dead.
    import socket

    from tests.mail import free_port

    seeds = tmp_path / "seeds"
    write_record(seeds / "good.md", title="The good one", webUrl="https://example.com/good")
    port = free_port()
    config = tmp_path / "feeds.yaml"
    config.write_text(f"seeds: seeds\nout: out\nstate_db: state.db\nserve: {{port: {port}}}\n", encoding="utf-8")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = subprocess.run([sys.executable, "-m", "feeds", "run", "--config", str(config)],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1] == f"Error: cannot listen on 127.0.0.1:{port}: Address already in use"
    status = run_cli("status", "--config", str(config))
    assert "Daemon: not running" in status.stdout.splitlines(), status.output  # no lease was taken


def test_a_moment_outside_the_calendar_in_utc_is_refused_in_one_line(tmp_path: Path) -> None:
    for command in (("build", "--now"), ("digest", "--date"), ("explain", "https://example.com/", "--now")):
        for moment in ("9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00"):
            result = CliRunner().invoke(cli, [*command, moment])
            assert result.exit_code == 2, (command, result.output)
            assert f"'{moment}' is not an ISO-8601 date or time" in result.stderr, result.output


def test_a_manifest_naming_a_folder_is_no_reason_for_every_build_to_fail(tmp_path: Path) -> None:
    # out/.feeds-build.json edited by hand (or by a bad merge) to list "topics": each build
    # tried to unlink the folder and failed, for good, without naming the manifest.
    seeds, out = tmp_path / "seeds", tmp_path / "out"
    write_record(seeds / "good.md", title="The good one", webUrl="https://example.com/good", topics=["AI"])
    args = ("build", "--seeds", str(seeds), "--out", str(out), "--now", NOW)
    assert run_cli(*args).exit_code == 0
    (out / ".feeds-build.json").write_text('{"version": 1, "outputs": {"topics": 1, "topics/ai": 1}}')
    write_record(seeds / "new.md", title="A new one", webUrl="https://example.com/new", topics=["AI"])
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    assert _titles(out) == ["A new one", "The good one"]
    assert (out / "topics/ai/rss.xml").is_file()


def test_new_bytes_with_the_old_size_and_mtime_are_read_again(tmp_path: Path) -> None:
    # touch -r (or cp -p, or a backup unpacked over the folder) gives a file new bytes under
    # its old size and mtime: the parse cache and the no-change check served the old title.
    seeds, out = tmp_path / "seeds", tmp_path / "out"
    record = write_record(seeds / "a.md", title="Good story", webUrl="https://example.com/a")
    args = ("build", "--seeds", str(seeds), "--out", str(out), "--now", NOW)
    assert run_cli(*args).exit_code == 0
    before = record.stat()
    record.write_text(record.read_text(encoding="utf-8").replace("Good story", "Evil story"), encoding="utf-8")
    os.utime(record, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (record.stat().st_size, record.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert run_cli(*args).exit_code == 0
    assert _titles(out) == ["Evil story"]
