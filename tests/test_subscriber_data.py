"""A person's data on request: `feeds subscribers export` prints all of it as JSON, and
`feeds subscribers erase` forgets it but for what "never mail again" and exactly-once
delivery need. Run on SQLite here and on PostgreSQL by tests/test_postgres.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from feeds import state
from tests.conftest import SEEDS, run_cli
from tests.mail import smtp_server

DATE = "2020-06-18T00:00:00Z"
SECRET = "a-test-secret-that-is-long-enough"


def write_config(tmp_path: Path, state_db: str, port: int) -> Path:
    config = tmp_path / "feeds.yaml"
    config.write_text(f"seeds: {SEEDS}\nout: {tmp_path / 'out'}\nstate_db: {state_db}\nsecret: {SECRET}\n"
                      "mail_from: AI Digest <digest@news.example.org>\n"
                      f"smtp:\n  host: 127.0.0.1\n  port: {port}\n  rate_per_second: 1000\n", encoding="utf-8")
    return config


def feeds(config: Path, *args: str) -> tuple[int, str, str]:
    result = run_cli(*args, "--config", str(config))
    return result.exit_code, result.stdout, result.stderr


def export(config: Path, address: str) -> dict[str, Any]:
    code, out, err = feeds(config, "subscribers", "export", address)
    assert code == 0, out + err
    data: dict[str, Any] = json.loads(out)
    return data


def everything_stored(url: str) -> str:
    """Every row of every table of the state database, as text: what a thief would get."""
    engine = state.open_state(url)
    with engine.connect() as db:
        return "\n".join(repr(tuple(row)) for table in state.metadata.sorted_tables
                         for row in db.execute(sa.select(table)))


def check_export_and_erase(tmp_path: Path, url: str) -> None:
    with smtp_server() as (server, port):
        config = write_config(tmp_path, url, port)
        for address in ("ada@example.org", "bob@example.org"):
            assert feeds(config, "subscribers", "add", address, "--topics", "ai", "--cadence", "weekly")[0] == 0
        assert feeds(config, "digest", "--date", DATE)[0] == 0  # an outbox copy of each, too
        code, out, err = feeds(config, "digest", "--date", DATE, "--send")
        assert code == 0 and len(server.received()) == 2, out + err

        # A digest job's summary that names her among others (as its failures do).
        summary = "digest weekly: 1 failed: ada@example.org: 550 no such user; bob@example.org: 451"
        state.record_job_run(state.open_state(url), state.JobRun("digest-weekly", "error", summary, None,
                                                                 datetime.now(UTC)))
        ada = export(config, "Ada@Example.org")
        assert (ada["email"], ada["erased"]) == ("ada@example.org", False)
        assert ada["subscriber"]["email"] == "ada@example.org" and ada["subscriber"]["topics"] == "ai"
        assert [(e["status"], e["source"]) for e in ada["status_history"]] == [("active", "operator")]
        [sent] = ada["deliveries"]
        assert (sent["edition"], sent["status"], sent["subscriber_id"]) == ("weekly-2020-06-18", "sent",
                                                                            ada["subscriber"]["id"])
        assert [run["job_id"] for run in ada["other"]["job_runs"]] == ["digest-weekly"]
        [eml] = ada["outbox_files"]
        assert Path(eml).name and Path(eml).is_file()

        # Erase someone subscribed: nothing of them in clear remains, anywhere.
        code, out, err = feeds(config, "subscribers", "erase", "ada@example.org")
        assert code == 0 and out.startswith("Erased ada@example.org: kept as erased:"), out + err
        assert "ada@example.org" not in everything_stored(url)
        assert "[erased address]: 550 no such user; bob@example.org: 451" in everything_stored(url)
        assert not Path(eml).exists() and len(export(config, "bob@example.org")["outbox_files"]) == 1
        after = export(config, "ada@example.org")
        assert after["erased"] and after["subscriber"]["email"].startswith("erased:")
        assert (after["subscriber"]["status"], after["subscriber"]["topics"]) == ("erased", "")
        assert [(e["status"], e["source"], e["reason"]) for e in after["status_history"]] == [
            ("active", "operator", None), ("erased", "erase", None)]
        [kept] = after["deliveries"]  # exactly-once needs it: the edition, its Message-ID, its status
        assert (kept["edition"], kept["message_id"], kept["status"], kept["detail"]) == (
            sent["edition"], sent["message_id"], "sent", None)
        assert after["subscriber"]["id"] == ada["subscriber"]["id"]

        # Erased while subscribed, added again: subscribed afresh, on the same row, so the
        # ledger still knows the edition they were sent.
        code, out, err = feeds(config, "subscribers", "add", "ada@example.org", "--topics", "ai", "--cadence", "weekly")
        assert code == 0 and out.startswith("Added ada@example.org"), out + err
        again = export(config, "ada@example.org")
        assert again["subscriber"]["id"] == ada["subscriber"]["id"] and again["subscriber"]["status"] == "active"
        code, out, err = feeds(config, "digest", "--date", DATE, "--send")
        assert code == 0 and len(server.received()) == 2, out + err  # nobody got this edition twice

        # Someone who left, then erased: they stay suppressed, said in one line, unless
        # the operator says --reactivate.
        engine = state.open_state(url)
        bob = state.find_subscriber(engine, "bob@example.org")
        assert bob is not None
        state.set_status(engine, bob.id, state.BOUNCED, source="bounce", now=datetime.now(UTC),
                         reason="550 5.1.1 <bob@example.org>: no such user")  # replies quote addresses
        assert feeds(config, "subscribers", "erase", "bob@example.org")[0] == 0
        assert "bob@example.org" not in everything_stored(url)
        code, out, err = feeds(config, "subscribers", "add", "bob@example.org", "--topics", "ai")
        assert code == 1 and err.splitlines() == [
            "left bob@example.org: bounced (bounce), then erased; not reactivated (use --reactivate)"]
        people = tmp_path / "people.csv"
        people.write_text("email,topics\nbob@example.org,ai\n", encoding="utf-8")
        code, out, err = feeds(config, "subscribers", "import", str(people))
        assert code == 0 and "1 not reactivated" in out and "bob@example.org" not in everything_stored(url)
        assert export(config, "bob@example.org")["subscriber"]["status"] == "bounced"
        code, out, err = feeds(config, "subscribers", "add", "bob@example.org", "--topics", "ai", "--reactivate")
        assert code == 0 and out.startswith("Reactivated bob@example.org"), out + err
        bob_now = export(config, "bob@example.org")
        assert bob_now["subscriber"]["id"] == bob.id and bob_now["subscriber"]["status"] == "active"
        assert bob_now["status_history"][-1]["source"] == "operator"

        # An unknown address: one line, a failing status, no traceback.
        for command in ("export", "erase"):
            code, out, err = feeds(config, "subscribers", command, "nobody@example.org")
            assert code == 1 and err.splitlines() == [
                "Error: nobody@example.org is not a subscriber (nor an erased one)"], out + err


def test_export_and_erase_on_sqlite(tmp_path: Path) -> None:
    check_export_and_erase(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")


def test_an_international_address_is_erased_however_it_is_typed(tmp_path: Path) -> None:
    """An address is stored as email-validator normalises it (Unicode domain, NFC): export
    and erase find it typed in its ASCII (punycode) form too, and erase deletes its outbox
    digest, whose To header has the domain in punycode."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    config = write_config(tmp_path, url, 25)
    config.write_text(config.read_text(encoding="utf-8").split("smtp:")[0], encoding="utf-8")  # outbox only
    stored = "jos\u00e9@b\u00fccher.example"
    assert feeds(config, "subscribers", "add", stored, "--topics", "ai", "--cadence", "weekly")[0] == 0
    assert feeds(config, "digest", "--date", DATE)[0] == 0
    # Typed decomposed (e + combining accent), the domain in ASCII:
    assert len(export(config, "jose\u0301@xn--bcher-kva.example")["outbox_files"]) == 1
    code, out, err = feeds(config, "subscribers", "erase", "JOSE\u0301@XN--BCHER-KVA.EXAMPLE")
    assert code == 0, out + err
    assert stored not in everything_stored(url) and "xn--bcher-kva" not in everything_stored(url)
    assert not list((tmp_path / "out/outbox").rglob("*.eml"))


def test_erase_leaves_no_address_in_the_sqlite_files_while_a_server_holds_them(tmp_path: Path) -> None:
    """`feeds serve` keeps the state database open, so its write-ahead log is not folded
    back when the erase command exits: the pages from before the erase, the address in
    clear, would stay in state.db-wal until some later checkpoint."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    config = write_config(tmp_path, url, 25)
    server = state.open_state(url)  # its pool keeps a connection open, as a running `feeds serve` does
    state.add_subscriber(server, "ada@example.org", ["ai"], "daily", datetime.now(UTC))
    code, out, err = feeds(config, "subscribers", "erase", "ada@example.org")
    assert code == 0, out + err
    assert server.pool.checkedin() == 1  # still open, between two requests
    files = sorted(tmp_path.glob("state.db*"))
    assert [f.name for f in files if b"ada@example.org" in f.read_bytes()] == []
