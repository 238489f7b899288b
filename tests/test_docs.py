"""The README is part of the product: its commands, options and config keys stay true."""

from __future__ import annotations

import re
from dataclasses import fields

import click

from feeds.cli import cli
from feeds.config import Config, QueueConfig, ScheduleConfig, ServeConfig, SmtpConfig
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)\n```", README, flags=re.S)


def test_readme_opens_with_build_then_test_commands() -> None:
    build, test = shell_blocks()[:2]
    assert "pip install -e ." in build and build.endswith("feeds build")
    assert "pip install -e '.[test]'" in test and test.endswith("pytest")


def test_ci_runs_the_readmes_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_command = shell_blocks()[1]
    ci_command = next(line for line in ci.splitlines() if "pytest" in line)
    assert ci_command.replace("pip install -q ", "pip install ") == test_command


def iter_commands(group: click.Group, prefix: str = "feeds") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, command in group.commands.items():
        found.append((f"{prefix} {name}", command))
        if isinstance(command, click.Group):
            found.extend(iter_commands(command, f"{prefix} {name}"))
    return found


def test_every_command_and_option_is_documented() -> None:
    assert isinstance(cli, click.Group)
    for name, command in iter_commands(cli):
        assert command.help, name
        assert name in README, name
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, (name, param.name)
                assert param.opts[0] in README, (name, param.opts[0])


def test_every_config_key_is_documented() -> None:
    for field in fields(Config):
        if field.name not in ("source", "topic_errors", "topic_notes"):  # what the file gave, not keys
            assert f"| `{field.name}` |" in README, field.name
    for section, cls in (("smtp", SmtpConfig), ("schedule", ScheduleConfig), ("serve", ServeConfig),
                         ("queue", QueueConfig)):
        for field in fields(cls):
            if field.name != "password":
                assert f"| `{section}.{field.name}` |" in README, (section, field.name)
    assert "FEEDS_SMTP_PASSWORD" in README and "FEEDS_SECRET" in README
