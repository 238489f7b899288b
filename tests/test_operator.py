"""Operating feeds: the config found where operators look, one set of files beside it, and
failures that say one line and exit non-zero.

Commands run as an operator runs them: `python -m feeds` in a subprocess, from a folder that
is not the config's, as a systemd unit with its own WorkingDirectory does.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path

import pytest
import yaml

from feeds.config import (
    CONFIG_NAME,
    VALIDATORS,
    Config,
    QueueConfig,
    ScheduleConfig,
    ServeConfig,
    SmtpConfig,
    find_config,
    load_config,
)
from feeds.errors import ServerStopped
from feeds.starter import STARTER
from tests.conftest import run_cli, write_record


def feeds(*args: str, cwd: Path, timeout: float = 60,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "feeds", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False, env={**os.environ, **(env or {})})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def one_error_line(result: subprocess.CompletedProcess[str], culprit: str) -> str:
    """The run failed with one line on stderr, naming ``culprit``, and no traceback."""
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and culprit in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------- config lookup


def test_the_config_key_table_covers_every_config_field() -> None:
    assert set(VALIDATORS) == {f.name for f in fields(Config)} - {"source", "topic_errors", "topic_notes"}


def test_lookup_order_is_flag_then_environment_then_current_folder(tmp_path: Path) -> None:
    given, named = tmp_path / "given.yaml", tmp_path / "named.yaml"
    assert find_config(given, {"FEEDS_CONFIG": str(named)}) == given
    assert find_config(None, {"FEEDS_CONFIG": str(named)}) == named
    assert find_config(None, {}) is None  # nothing here: the defaults
    (tmp_path / CONFIG_NAME).write_text("title: Here\n")
    assert find_config(None, {}) == Path(CONFIG_NAME)
    assert find_config(None, {"FEEDS_CONFIG": str(named)}) == named


def test_commands_use_feeds_config_then_the_current_folders_feeds_yaml(tmp_path: Path) -> None:
    etc, here = folder(tmp_path / "etc"), folder(tmp_path / "here")
    (etc / CONFIG_NAME).write_text("title: From the environment\n")
    (here / CONFIG_NAME).write_text("title: From here\n")
    by_env = feeds("status", cwd=here, env={"FEEDS_CONFIG": str(etc / CONFIG_NAME)})
    assert by_env.returncode == 0, by_env.stderr
    assert f"Config:         {etc / CONFIG_NAME}" in by_env.stdout
    assert f"State database: sqlite:///{etc / 'feeds.db'}" in by_env.stdout
    by_folder = feeds("status", cwd=here, env={"FEEDS_CONFIG": ""})
    assert f"Config:         {here / CONFIG_NAME}" in by_folder.stdout
    # beside ./feeds.yaml, which is here; status only looks, so it is not made
    assert f"State database: sqlite:///{here / 'feeds.db'} (none yet" in by_folder.stdout
    assert not (here / "feeds.db").exists()


def test_read_only_commands_never_create_the_state_database(tmp_path: Path) -> None:
    nowhere = folder(tmp_path / "nowhere")  # no config, no feeds.db: most likely the wrong folder
    lost = feeds("status", cwd=nowhere, env={"FEEDS_CONFIG": ""})
    assert "no config file" in one_error_line(lost, str(nowhere / "feeds.db"))
    listed = feeds("subscribers", "list", cwd=nowhere, env={"FEEDS_CONFIG": ""})
    assert listed.returncode == 0 and listed.stdout == "", listed.stderr
    assert listed.stderr.strip() == f"0 subscribers, 0 active (no state database yet at {nowhere / 'feeds.db'})."
    for command in ("export", "erase", "remove"):
        asked = feeds("subscribers", command, "ada@example.org", cwd=nowhere, env={"FEEDS_CONFIG": ""})
        one_error_line(asked, "ada@example.org is not a subscriber")
    assert list(nowhere.iterdir()) == []
    # A config but nothing run yet (a fresh install): status says so and succeeds.
    etc = folder(tmp_path / "etc")
    (etc / CONFIG_NAME).write_text("title: Fresh\n")
    fresh = feeds("status", "--config", str(etc / CONFIG_NAME), cwd=nowhere)
    assert fresh.returncode == 0, fresh.stderr
    assert f"State database: sqlite:///{etc / 'feeds.db'} (none yet: nothing has been recorded)" in fresh.stdout
    assert "Daemon: not running" in fresh.stdout and "No jobs scheduled yet" in fresh.stdout
    assert sorted(p.name for p in etc.iterdir()) == [CONFIG_NAME] and list(nowhere.iterdir()) == []


def test_default_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    path = folder(tmp_path / "etc") / CONFIG_NAME
    path.write_text("title: Beside\n")
    config = load_config(path)
    assert config.seeds == tmp_path / "etc/seeds" and config.out == tmp_path / "etc/out"
    assert config.cache_db == tmp_path / "etc/feeds-cache.db"
    assert config.state_db == f"sqlite:///{tmp_path / 'etc/feeds.db'}"


@pytest.mark.parametrize("given, expected", [
    ("state.db", "sqlite:///{here}/state.db"),
    ("sqlite:///state.db", "sqlite:///{here}/state.db"),
    ("sqlite+pysqlite:///db/state.db?timeout=5", "sqlite+pysqlite:///{here}/db/state.db?timeout=5"),
    ("sqlite:////var/lib/feeds/state.db", "sqlite:////var/lib/feeds/state.db"),
    ("sqlite:///:memory:", "sqlite:///:memory:"),
    ("postgresql://feeds@db/feeds", "postgresql://feeds@db/feeds"),
])
def test_a_relative_sqlite_state_db_is_beside_the_config(tmp_path: Path, given: str, expected: str) -> None:
    path = folder(tmp_path / "etc") / CONFIG_NAME
    path.write_text(f"state_db: '{given}'\n")
    assert load_config(path).state_db == expected.format(here=tmp_path / "etc")


def test_no_config_keeps_the_current_folder_as_base(tmp_path: Path) -> None:
    assert load_config(find_config(None, {})) == Config()
    assert Config().state_db == "sqlite:///feeds.db" and Config().out == Path("out")


# ---------------------------------------------------------------------------- init


def test_init_writes_a_starter_that_loads_back_to_the_defaults(tmp_path: Path) -> None:
    result = run_cli("init", str(tmp_path / "etc"))
    assert result.exit_code == 0, result.output
    written = tmp_path / "etc" / CONFIG_NAME
    assert written.read_text(encoding="utf-8") == STARTER
    empty = tmp_path / "etc" / "empty.yaml"
    empty.write_text("")
    # The defaults, with the file's folder as base (as every config file has).
    assert replace(load_config(written), source=None) == replace(load_config(empty), source=None)


def test_the_starter_names_every_key() -> None:
    raw = yaml.safe_load(STARTER)
    assert set(raw) == {f.name for f in fields(Config)} - {"source", "topic_errors", "topic_notes"}
    for section, cls in (("smtp", SmtpConfig), ("schedule", ScheduleConfig), ("serve", ServeConfig),
                         ("queue", QueueConfig)):
        assert set(raw[section]) == {f.name for f in fields(cls)} - {"password"}, section
    assert "FEEDS_SMTP_PASSWORD" in STARTER and "FEEDS_SECRET" in STARTER


def test_init_never_overwrites_a_config(tmp_path: Path) -> None:
    (tmp_path / CONFIG_NAME).write_text("title: Mine\n")
    result = feeds("init", cwd=tmp_path)
    one_error_line(result, f"{CONFIG_NAME}: already exists")
    assert (tmp_path / CONFIG_NAME).read_text() == "title: Mine\n"


def test_init_where_it_cannot_write_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file, not a folder")
    one_error_line(feeds("init", str(tmp_path / "blocker" / "etc"), cwd=tmp_path), str(tmp_path / "blocker"))


# ------------------------------------------------------- the README's systemd layout


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    """/etc/feeds: a config naming nothing but what it must; every file goes beside it."""
    etc = folder(tmp_path / "etc")
    write_record(etc / "seeds" / "a.md", title="Robots", topics=["AI"])
    (etc / CONFIG_NAME).write_text("secret: a-test-secret-that-is-long-enough\n"
                                   "schedule:\n  build_every_minutes: 60\n  lease_seconds: 5\n")
    return etc


@pytest.fixture
def daemon(etc: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`feeds run --config /etc/feeds/feeds.yaml` with WorkingDirectory=/var/lib/feeds."""
    port = free_port()
    work = folder(tmp_path / "var-lib-feeds")
    process = subprocess.Popen([sys.executable, "-m", "feeds", "run", "--config", str(etc / CONFIG_NAME),
                                "--port", str(port)], cwd=work, stderr=subprocess.PIPE)
    try:
        yield process, port
    finally:
        process.terminate()
        process.wait(timeout=60)


def wait_for_http(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return bytes(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_the_systemd_layout_works_from_any_folder(etc: Path, tmp_path: Path,
                                                  daemon: tuple[subprocess.Popen[bytes], int]) -> None:
    process, port = daemon
    config = str(etc / CONFIG_NAME)
    shell = folder(tmp_path / "home")
    added = feeds("subscribers", "add", "ada@example.org", "--topics", "ai", "--config", config, cwd=shell)
    assert added.returncode == 0, added.stderr
    # The daemon serves the feeds its first build wrote beside the config, on --port.
    feed = wait_for_http(f"http://127.0.0.1:{port}/topics/ai/rss.xml", process)
    assert b"Robots" in feed and (etc / "out/topics/ai/rss.xml").is_file()
    elsewhere = folder(tmp_path / "elsewhere")
    status = feeds("status", "--config", config, cwd=elsewhere)
    assert status.returncode == 0, status.stderr
    assert "Daemon: running" in status.stdout
    assert f"Config:         {etc / CONFIG_NAME}" in status.stdout
    assert f"State database: sqlite:///{etc / 'feeds.db'}" in status.stdout
    assert f"Cache:          {etc / 'feeds-cache.db'}" in status.stdout
    assert f"Output folder:  {etc / 'out'}" in status.stdout
    listed = feeds("subscribers", "list", "--config", config, cwd=elsewhere)
    assert listed.stdout.startswith("ada@example.org\t")
    # Nothing strays into the folders the commands ran from.
    for cwd in (tmp_path / "var-lib-feeds", shell, elsewhere):
        assert list(cwd.iterdir()) == [], cwd
    assert (etc / "feeds.db").is_file() and (etc / "feeds-cache.db").is_file()


# ----------------------------------------------------------------- host and port


def test_serve_flags_win_over_the_config(tmp_path: Path) -> None:
    taken_in_config, port = free_port(), free_port()
    folder(tmp_path / "out").joinpath("index.html").write_text("<p>hello</p>")
    (tmp_path / CONFIG_NAME).write_text(f"serve:\n  host: 192.0.2.1\n  port: {taken_in_config}\n")
    process = subprocess.Popen([sys.executable, "-m", "feeds", "serve", "--host", "127.0.0.1", "--port", str(port)],
                               cwd=tmp_path, stderr=subprocess.PIPE)
    try:
        assert wait_for_http(f"http://127.0.0.1:{port}/", process) == b"<p>hello</p>"
    finally:
        process.terminate()
        process.wait(timeout=60)


@pytest.fixture
def taken() -> Iterator[int]:
    """A port another process listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_serve_on_a_taken_port_says_so_before_serving(tmp_path: Path, taken: int) -> None:
    result = feeds("serve", "--port", str(taken), cwd=tmp_path)
    line = one_error_line(result, f"127.0.0.1:{taken}")
    assert "Serving" not in result.stdout + result.stderr and "in use" in line


def test_run_on_a_taken_port_claims_nothing(tmp_path: Path, etc: Path, taken: int) -> None:
    config = str(etc / CONFIG_NAME)
    result = feeds("run", "--config", config, "--port", str(taken), cwd=tmp_path)
    one_error_line(result, f"127.0.0.1:{taken}")
    status = feeds("status", "--config", config, cwd=tmp_path)
    assert "Daemon: not running" in status.stdout and "No jobs scheduled yet" in status.stdout
    assert not (etc / "out").exists()  # no build ran


def test_the_daemon_stops_with_an_error_when_its_server_stops(etc: Path) -> None:
    from feeds.scheduler import Daemon

    config = load_config(etc / CONFIG_NAME)
    config = replace(config, serve=replace(config.serve, port=free_port()),
                     schedule=replace(config.schedule, build_every_minutes=None))
    daemon = Daemon(config, str(etc / CONFIG_NAME))
    daemon.start()
    try:
        deadline = time.monotonic() + 30
        while not (daemon.server.started or time.monotonic() > deadline):
            time.sleep(0.05)
        daemon.server.should_exit = True  # the server stops, the daemon did not ask it to
        assert daemon.stopped.wait(30)
    finally:
        daemon.shutdown()
    assert isinstance(daemon.failure, ServerStopped) and daemon.failure.port == config.serve.port


# ---------------------------------------------------------------- operator faults


COMMANDS = {
    "build": ["build"],
    "explain": ["explain", "https://example.com/a-story"],
    "digest": ["digest"],
    "digest --send": ["digest", "--send"],
    "subscribers add": ["subscribers", "add", "ada@example.org", "--topics", "ai"],
    "subscribers list": ["subscribers", "list"],
    "subscribers remove": ["subscribers", "remove", "ada@example.org"],
    "subscribers import": ["subscribers", "import", "{conf}/people.csv"],
    "inbox process": ["inbox", "process", "--mbox", "{conf}/mbox"],
    "run": ["run", "--port", "{port}"],
    "serve": ["serve", "--port", "{port}"],
    "status": ["status"],
    "init": ["init", "{conf}/new"],
}
STATE = {"digest", "digest --send", "subscribers add", "subscribers list", "subscribers remove",
         "subscribers import", "inbox process", "run", "serve", "status"}
# Each fault, the config keys that make it, the commands it must stop, and what their
# one line names. As root (the test machines), chmod 0o555 does not stop a write: an
# unwritable out/ or cache is a path through a regular file, which stops root too.
FAULTS = {
    "corrupt state database": ({"state_db": "state.db"}, STATE, "{conf}/state.db"),
    "unreachable postgresql": ({"state_db": "postgresql://feeds:hunter2@127.0.0.1:{closed}/feeds"}, STATE,
                               "postgresql://feeds:***@127.0.0.1:{closed}/feeds"),
    "unwritable out": ({"out": "blocker"}, {"build", "digest", "digest --send", "run", "serve"}, "{conf}/blocker"),
    # `run` does not use the cache itself: its build job reports the fault in the log and
    # in `feeds status`, and the daemon goes on (a long-running command, left out here).
    "unwritable cache": ({"cache_db": "blocker/cache.db"},
                         {"build", "explain", "digest", "digest --send", "subscribers add", "subscribers import"},
                         "{conf}/blocker/cache.db"),
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("fault", FAULTS)
def test_every_command_reports_an_operator_fault_in_one_line(tmp_path: Path, fault: str, command: str) -> None:
    keys, stopped, culprit = FAULTS[fault]
    if fault == "unwritable cache" and command in ("run", "serve"):
        pytest.skip("long-running, and the cache is only its build job's (see FAULTS)")
    conf = folder(tmp_path / "conf")
    write_record(conf / "seeds" / "a.md", topics=["AI"])
    (conf / "people.csv").write_text("email,topics\nada@example.org,ai\n")
    (conf / "mbox").write_text("")
    (conf / "blocker").write_text("a file, not a folder")
    (conf / "state.db").write_bytes(b"\x00garbage, not SQLite\xff" * 200)
    names = {"conf": str(conf), "closed": str(free_port()), "port": str(free_port())}
    config = {"secret": "a-test-secret-that-is-long-enough", "smtp": {"port": int(names["closed"])},
              **{k: v.format(**names) for k, v in keys.items()}}
    (conf / CONFIG_NAME).write_text(yaml.safe_dump(config))
    args = [arg.format(**names) for arg in COMMANDS[command]]
    cwd = folder(tmp_path / "elsewhere")
    try:
        with_config = [] if command == "init" else ["--config", str(conf / CONFIG_NAME)]
        result = feeds(*args, *with_config, cwd=cwd, timeout=30)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{command} went on running despite {fault}: {e.stderr!r}") from e
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    if command in stopped:
        one_error_line(result, culprit.format(**names))
    else:  # a fault in a file the command does not use is none of its business
        assert result.returncode == 0 or "ada@example.org is not a subscriber" in result.stderr, result.stderr
    assert list(cwd.iterdir()) == []
