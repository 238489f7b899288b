"""feeds.fastyaml must read exactly what PyYAML's safe loader reads, or step aside."""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds import fastyaml
from tests.conftest import DATA, SEEDS

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def front_matter(path: Path) -> str:
    lines = path.read_text(encoding="utf-8").split("\n")
    end = next(i for i, line in enumerate(lines) if i and line.strip() in ("---", "..."))
    return "\n".join(lines[1:end])


def agrees(text: str) -> bool:
    """True if fastyaml read it (and agreed); False if it stepped aside. Fails on a
    disagreement, or if fastyaml accepts what PyYAML refuses."""
    try:
        expected = yaml.load(text, Loader=LOADER)
    except yaml.YAMLError:
        with pytest.raises(fastyaml.Unsupported):
            fastyaml.load(text)
        return False
    try:
        got = fastyaml.load(text)
    except fastyaml.Unsupported:
        return False
    assert got == expected and repr(got) == repr(expected), text
    return True


def test_every_real_record_is_read_by_the_fast_path_and_agrees(corpus: Path) -> None:
    records = sorted((corpus / "articles").glob("*.md")) + sorted(SEEDS.glob("*.md"))
    assert all(agrees(front_matter(p)) for p in records)


def test_synthetic_benchmark_records_agree(tmp_path: Path) -> None:
    from benchmarks.generate import generate
    assert all(agrees(front_matter(p)) for p in generate(tmp_path, 150, seed=7))


def test_bad_fixtures_agree_or_step_aside() -> None:
    for path in sorted((DATA / "bad").glob("*.md")):
        try:
            text = front_matter(path)
        except (StopIteration, UnicodeDecodeError):
            continue
        agrees(text)


scalars = st.one_of(
    st.text(alphabet=string.printable + "éü中→", max_size=30),
    st.sampled_from(["yes", "No", "on", "OFF", "~", "null", "true", "0x1F", "0o17", "017", "1_000",
                     "1:20", "3.5", ".inf", "-.nan", "1e3", "2020-06-17", "2020-06-17 12:00:00",
                     "2020-06-17T12:00:00Z", "2020-06-17T12:00:00+02:00", "-1", "-", "?", ":", "<<", "=",
                     "a: b", "a #b", "#c", "'q'", '"q"', "[x]", "{y}", "&a", "*a", "!t", "|", ">", "%", "@", "`"]),
    st.integers(-10**12, 10**12),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),  # noqa: DTZ001 - hypothesis bounds are naive
)
keys = st.one_of(st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,12}", fullmatch=True),
                st.sampled_from(["yes", "no", "on", "null", "1", "title"]))
documents = st.recursive(
    st.dictionaries(keys, scalars, max_size=6),
    lambda inner: st.dictionaries(keys, st.one_of(scalars, inner, st.lists(st.one_of(scalars, inner), max_size=4)),
                                  max_size=6),
    max_leaves=40,
)


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(documents, st.sampled_from([None, '"']), st.booleans(), st.integers(0, 2))
def test_generated_documents_agree(document: dict, style: str | None, unicode: bool, indent_extra: int) -> None:  # type: ignore[type-arg]
    text = yaml.safe_dump(document, default_flow_style=False, default_style=style, allow_unicode=unicode,
                          width=10**6, indent=2 + indent_extra, sort_keys=False)
    agrees(text)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(documents, st.lists(st.integers(0, 3), min_size=1))
def test_extra_spaces_after_colons_and_dashes_agree(document: dict, extra: list[int]) -> None:  # type: ignore[type-arg]
    text = yaml.safe_dump(document, default_flow_style=False, width=10**6, sort_keys=False)
    spaced = iter(extra * len(text))
    agrees(re.sub(r"(: |- )", lambda m: m.group(1) + " " * next(spaced), text))
    assert agrees("title:   spaced out\nlist:\n  -   a\n  -  b\n")


@settings(max_examples=600, deadline=None)
@given(st.text(alphabet=" \n\r\x85\u2028-:#'\"\\abn01yT\t[]{}&*!|>.", max_size=60))
def test_arbitrary_text_never_disagrees(text: str) -> None:
    agrees(text)


def test_the_fast_path_is_used_for_records() -> None:
    text = front_matter(next(SEEDS.glob("*.md")))
    assert fastyaml.load(text)["provider"]["name"]


@settings(max_examples=600, deadline=None)
@given(st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + string.punctuation + " éü中", min_size=1, max_size=20),
    st.from_regex(r"-?[0-9]{1,4}\.[0-9]{1,4}", fullmatch=True),
    st.sampled_from([".5", ".inf", "+1", "-2.5", "-0.0", "007.50", "1.5e3", "1.", "~", "<<", "=", "0x1F", "1:20",
                     "Yes", "n", "NULL", "off", "Off!", "/tmp/a", "%x", "1e3", "2020-06-17", "é", "TRUE", "t"]),
))
def test_plain_scalars_of_every_first_character_agree(value: str) -> None:
    # Scalars starting with a character no PyYAML resolver claims are read as strings
    # without asking PyYAML; every first character is tried here.
    agrees(f"key: {value}\nlist:\n  - {value}\n")


def test_the_first_characters_and_words_read_without_pyyaml_are_pyyamls() -> None:
    from yaml.resolver import Resolver
    table = Resolver.yaml_implicit_resolvers
    assert None not in table  # no resolver looks at every scalar
    assert fastyaml.RESOLVED_FIRST == {first for first in table if first}
    for word, value in fastyaml.WORDS.items():
        assert repr(yaml.safe_load(f"k: {word}")["k"]) == repr(value), word
    bools = Resolver.yaml_implicit_resolvers["y"][0][1]  # yes|Yes|...: every YAML 1.1 boolean word
    words = {w.strip() for w in bools.pattern.strip("^$()?:").split("|")}
    assert {w for w in fastyaml.WORDS if fastyaml.WORDS[w] is not None} == words


def test_a_plain_config_and_a_usual_record_are_read_without_importing_pyyaml(tmp_path: Path) -> None:
    import subprocess
    import sys

    from benchmarks.generate import generate
    [record] = generate(tmp_path / "records", 1, seed=3)
    config = tmp_path / "feeds.yaml"
    config.write_text(f"seeds: {tmp_path / 'records'}\nitems_per_feed: 20\nmax_age_days: null\nhalf_life_hours: 36.5\n"
                      "serve:\n  port: 8001\n", encoding="utf-8")
    code = ("import sys; from pathlib import Path; from feeds.config import load_config; "
            "from feeds.load import load_record; "
            f"c = load_config(Path({str(config)!r})); r = load_record(Path({str(record)!r}), 1 << 20); "
            "print(c.items_per_feed, c.half_life_hours, c.serve.port, r.article is not None, 'yaml' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["20", "36.5", "8001", "True", "False"]
