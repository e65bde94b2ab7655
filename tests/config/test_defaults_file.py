"""The shipped ``etc/TashiDefaults.cfg`` is current, documents every option, and says the truth.

When a setting changes in ``src/tashi/config/`` (any section's module), run ``make defaults``.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tashi.config import Settings, load_settings
from tashi.config.defaults import render
from tashi.config.options import option_info

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "etc" / "TashiDefaults.cfg"


def section_classes() -> list[Any]:
    return [field.default_factory for field in dataclasses.fields(Settings)]


def options() -> list[tuple[str, str, str]]:
    """(section, option name, comment) of every setting (a table section's lines are not)."""
    return [
        (cls.SECTION, option_info(field).name, option_info(field).comment())
        for cls in section_classes()
        if not hasattr(cls, "TABLE")
        for field in dataclasses.fields(cls)
    ]


def tables() -> dict[str, dict[str, str]]:
    """A table section's shipped lines (``config/ec2.py``'s ``[InstanceTypes]``) by section."""
    return {cls.SECTION: cls.TABLE for cls in section_classes() if hasattr(cls, "TABLE")}


def shipped_blocks() -> dict[tuple[str, str], list[str]]:
    """(section, option) -> the comment lines right above it in the shipped file."""
    blocks: dict[tuple[str, str], list[str]] = {}
    section = ""
    comments: list[str] = []
    for line in SHIPPED.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            comments.append(line)
        elif match := re.fullmatch(r"\[(\w+)\]", line):
            section, comments = match.group(1), []
        elif section in tables() and line:
            name, _, value = line.partition(" = ")
            assert tables()[section].get(name) == value, f"[{section}] {line!r} is not shipped"
        elif match := re.fullmatch(r"(\w+) =.*", line):
            blocks[(section, match.group(1))] = comments
            comments = []
        else:
            assert line == "", f"unexpected line in {SHIPPED.name}: {line!r}"
            comments = []
    return blocks


def test_the_shipped_file_is_byte_equal_to_the_render() -> None:
    assert SHIPPED.read_bytes() == render().encode("utf-8"), (
        f"{SHIPPED} is stale: run `make defaults`"
    )


def test_the_module_prints_the_render() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tashi.config.defaults"],
        capture_output=True,
        check=True,
        text=True,
    )
    assert done.stdout == render()


@pytest.mark.parametrize(("section", "option", "doc"), options(), ids=lambda x: str(x)[:30])
def test_every_option_appears_with_its_comment(section: str, option: str, doc: str) -> None:
    comments = shipped_blocks().get((section, option))
    assert comments is not None, f"[{section}] {option} is missing from {SHIPPED.name}"
    assert comments, f"[{section}] {option} has no comment above it"
    assert " ".join(line.removeprefix("# ") for line in comments) == " ".join(doc.split())


def test_the_file_holds_nothing_but_the_options() -> None:
    assert set(shipped_blocks()) == {(section, option) for section, option, _ in options()}


def test_every_section_says_what_it_is_for() -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    for cls in section_classes():
        assert cls.DOC.strip(), f"[{cls.SECTION}] has no description"
        assert f"[{cls.SECTION}]" in text


def test_reading_the_shipped_file_gives_exactly_the_defaults_in_code() -> None:
    # The file is documentation, but it is also read (./etc is first in the search order):
    # every value it shows must parse back to the default the code uses.
    for program in ("ClusterManager", "Client"):
        assert load_settings(program, dirs=[SHIPPED.parent], env={}) == Settings()


def test_option_names_are_unique_within_a_section_whatever_the_case() -> None:
    # configparser lower-cases option names, so two spellings of one name would collide.
    seen: set[tuple[str, str]] = set()
    for section, option, _ in options():
        key = (section, option.lower())
        assert key not in seen, f"[{section}] {option} is declared twice"
        seen.add(key)


def test_a_table_section_ships_its_lines_and_a_site_adds_and_changes_them(tmp_path: Path) -> None:
    (tmp_path / "Tashi.cfg").write_text("[InstanceTypes]\nlab.big = 8, 16384\nt3.nano = 1, 256\n")
    settings = load_settings("ClusterManager", dirs=[SHIPPED.parent, tmp_path], env={})
    entries = dict(settings.instance_types.entries)
    assert entries["lab.big"] == "8, 16384"
    assert entries["t3.nano"] == "1, 256"
    assert entries["t3.micro"] == "2, 1024"


def test_section_names_are_unique() -> None:
    names = [cls.SECTION for cls in section_classes()]
    assert len(names) == len(set(names))


def test_lines_fit_in_a_terminal() -> None:
    for number, line in enumerate(SHIPPED.read_text(encoding="utf-8").splitlines(), start=1):
        assert len(line) <= 100, f"{SHIPPED.name}:{number} is {len(line)} characters long"


@pytest.mark.parametrize(
    ("section", "option", "default"),
    [
        ("ClusterManagerService", "port", "9882"),
        ("ClusterManagerService", "host", "localhost"),
        ("ClusterManagerService", "maxMemory", "8192"),
        ("ClusterManagerService", "maxCores", "8"),
        ("ClusterManagerService", "expireHostTime", "6.0"),
        ("ClusterManagerService", "allowDecayed", "30.0"),
        ("ClusterManagerService", "allowMismatchedVersions", "False"),
        ("ClusterManagerService", "allowDuplicateNames", "False"),
        ("ClusterManagerService", "defaultNetwork", "1"),
        ("Client", "clusterManagerHost", "localhost"),
        ("Client", "clusterManagerPort", "9882"),
    ],
)
def test_options_keep_their_original_tashi_names_and_defaults(
    section: str, option: str, default: str
) -> None:
    lines = SHIPPED.read_text(encoding="utf-8").splitlines()
    start = lines.index(f"[{section}]")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    assert f"{option} = {default}" in lines[start:end]
