"""pOCCI 1.0.3, CESNET's OCCI compliance tool and client library (PyPI, 2017), made to run on
Python 3: its sdist is fetched once from PyPI (pinned by SHA-256), its ``pOCCI`` package is
converted by ``lib2to3`` (the conversion its ``setup.py`` asked setuptools for with
``use_2to3``), and the few lines that Python 3.11 refuses after that are rewritten
(``FIXUPS``: each must match as many times as it says, else the build fails). The result is
kept under ``var/cache/pOCCI-1.0.3-<recipe>/`` and reused; ``python -m tests.occi.pocci``
builds it and prints where. pOCCI talks HTTP through pycurl (a dev dependency)."""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

VERSION = "1.0.3"
URL = (
    "https://files.pythonhosted.org/packages/31/a5/"
    "47a9d4aa0a9c27218082906e80c61e1b47e713238b52420fb79a575e8a57/pOCCI-1.0.3.tar.gz"
)
SHA256 = "f8db7fe143b067e9fec354303fe539518ade0de949a0c3284490d3ab6834d8a4"
REPO = Path(__file__).resolve().parents[2]

# What lib2to3 leaves that Python 3.11 refuses, as (file, text, replacement, times): a global
# flag (?i) after ``^`` is an error since 3.11 ("global flags not at the start of the
# expression"); invalid escapes in plain strings warn (an error under the tests' warning filter).
FIXUPS: list[tuple[str, str, str, int]] = [
    ("render_text.py", r"r'^(?i)category:\s*'", r"r'(?i)^category:\s*'", 1),
    ("render_text.py", r"r'^(?i)link:\s*'", r"r'(?i)^link:\s*'", 1),
    ("render_text.py", r"r'^(?i)x-occi-attribute:\s*'", r"r'(?i)^x-occi-attribute:\s*'", 1),
    (
        "render_text.py",
        r"r'^((?i)x-occi-location|location):\s*(.*)'",
        r"r'(?i)^(x-occi-location|location):\s*(.*)'",
        1,
    ),
    ("CORE.py", r"check_http_status('2\d\d ',", r"check_http_status(r'2\d\d ',", 1),
    ("transport.py", r"(empty string='\*/\*')", "(empty string='*/*')", 4),
]
# the converted tree's directory: another recipe, another directory
RECIPE = hashlib.sha256(repr((SHA256, FIXUPS)).encode()).hexdigest()[:12]
CACHE = REPO / "var" / "cache" / f"pOCCI-{VERSION}-{RECIPE}"


def _sdist() -> bytes:
    data = httpx.get(URL, follow_redirects=True, timeout=120.0).raise_for_status().content
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise RuntimeError(f"pOCCI-{VERSION}.tar.gz from PyPI has SHA-256 {digest}, not {SHA256}")
    return data


def _unpack(data: bytes, into: Path) -> Path:
    package = into / "pOCCI"
    package.mkdir()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if len(parts) == 3 and parts[1] == "pOCCI" and member.isfile():
                source = tar.extractfile(member)
                assert source is not None
                (package / parts[2]).write_bytes(source.read())
    return package


def _convert(package: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # lib2to3: removed in Python 3.13
        from lib2to3.main import main as lib2to3_main

    quiet = io.StringIO()
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = quiet
    try:
        status = lib2to3_main("lib2to3.fixes", ["-w", "-n", "--no-diffs", str(package)])
    finally:
        sys.stdout, sys.stderr = old_out, old_err
    if status != 0:
        raise RuntimeError(f"lib2to3 failed on pOCCI ({status}):\n{quiet.getvalue()}")
    for name, old, new, times in FIXUPS:
        path = package / name
        text = path.read_text()
        if text.count(old) != times:
            raise RuntimeError(f"pOCCI fixup: {old!r} is not {times} times in {name}")
        path.write_text(text.replace(old, new))
    for path in sorted(package.glob("*.py")):  # nothing left that Python 3.11 warns about
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            compile(path.read_text(), str(path), "exec")


def ensure() -> Path:
    """The directory to put on ``PYTHONPATH`` for ``import pOCCI`` (built when missing)."""
    if (CACHE / "pOCCI" / "pOCCI.py").is_file():
        return CACHE
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE.parent) as scratch:
        built = Path(scratch) / "tree"
        built.mkdir()
        _convert(_unpack(_sdist(), built))
        try:
            os.rename(built, CACHE)
        except OSError:  # another run made it meanwhile
            if not (CACHE / "pOCCI" / "pOCCI.py").is_file():
                raise
            shutil.rmtree(built)
    return CACHE


@dataclass(frozen=True)
class Verdict:
    """One of pOCCI's checks: its name (``OCCI/CORE/DISCOVERY/001``), OK or not, and why not."""

    name: str
    ok: bool
    reasons: tuple[str, ...]


def names() -> list[str]:
    """The names of every check pOCCI defines (``pOCCI -l``; without ``-t`` it runs all but
    three it skips by default: CORE/CREATE/001 and 006, INFRA/CREATE/005)."""
    env = {**os.environ, "PYTHONPATH": str(ensure())}
    argv = [sys.executable, "-m", "pOCCI.pOCCI", "-l"]
    return subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout.split()


def check(
    url: str, user: str, password: str, mimetype: str, tests: list[str], home: Path
) -> dict[str, Verdict]:
    """pOCCI's compliance checks ``tests`` against ``url`` in ``mimetype`` (``text/plain`` or
    ``text/occi``), run as its command runs them (``pOCCI -f json``); ``home``: where it looks
    for a ``.pOCCI.cfg`` (none)."""
    env = {**os.environ, "PYTHONPATH": str(ensure()), "HOME": str(home)}
    argv = [sys.executable, "-m", "pOCCI.pOCCI", "-e", url, "-u", user, "-p", password]
    argv += ["-m", mimetype, "-f", "json", "-t", ",".join(tests)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, check=False)
    # pOCCI prints the links INFRA/CREATE/005 found before its report: the report is the rest
    start = done.stdout.find("\n{")
    try:
        report = json.loads(done.stdout[start:] if start >= 0 else done.stdout)
    except json.JSONDecodeError:
        raise AssertionError(
            f"pOCCI gave no report (exit {done.returncode}):\n{done.stdout[-3000:]}"
            f"\n{done.stderr[-3000:]}"
        ) from None
    assert done.returncode == (0 if report["failed"] == 0 else 1), done.stderr
    return {
        t["name"]: Verdict(t["name"], t["status"] == "OK", tuple(t.get("reason", ())))
        for t in report["tests"]
    }


def modules() -> dict[str, ModuleType]:
    """pOCCI's client library, imported: ``occi`` (its model), ``occi_libs`` (its defaults),
    ``render`` (its renderers) and ``transport`` (HTTP over pycurl)."""
    path = str(ensure())
    if path not in sys.path:
        sys.path.append(path)
    return {
        m: importlib.import_module(f"pOCCI.{m}")
        for m in ("occi", "occi_libs", "render", "transport")
    }


class Client:
    """An OCCI client made of pOCCI's library as its authors use it in their checks: its
    ``Transport`` (pycurl, HTTP Basic) and its renderers (``text/plain`` bodies, ``text/occi``
    headers); every method answers what pOCCI parsed, and the HTTP status line."""

    def __init__(self, url: str, user: str, password: str) -> None:
        self.mods = modules()
        config = dict(self.mods["occi_libs"].occi_defaults)
        config.update(url=url, user=user, passwd=password, mimetype="text/plain")
        self.url = url
        self.conn: Any = self.mods["transport"].Transport(config)
        self.plain: Any = self.mods["render"].create_renderer("text/plain")
        self.headers: Any = self.mods["render"].create_renderer("text/occi")

    def categories(self) -> tuple[str, list[dict[str, Any]]]:
        body, headers, status, _ = self.conn.get(mimetype="text/plain")
        return status, self.plain.parse_categories(body, headers)

    def create(
        self, kind: str, categories: list[dict[str, Any]], attributes: dict[str, Any]
    ) -> tuple[str, list[str]]:
        """POST a new resource to ``kind``'s collection (text/plain): the status and the
        locations of the answer."""
        occi = self.mods["occi"]
        cats = [occi.Category({k: c[k] for k in ("term", "scheme", "class")}) for c in categories]
        attrs = [occi.Attribute({"name": k, "value": v}) for k, v in attributes.items()]
        body, headers = self.plain.render_resource(cats, None, attrs)
        reply, rheaders, status, _ = self.conn.post(
            url=f"{self.url}/{kind}/", headers=["Content-Type: text/plain", *headers], body=body
        )
        return status, self.plain.parse_locations(reply, rheaders)

    def list(self, kind: str) -> tuple[str, list[str]]:
        body, headers, status, _ = self.conn.get(url=f"{self.url}/{kind}/", mimetype="text/occi")
        return status, self.headers.parse_locations(body, headers)

    def read(self, location: str) -> tuple[str, dict[str, Any]]:
        """A resource (text/occi): its attributes by name, ``category`` and ``links`` too."""
        body, headers, status, _ = self.conn.get(url=location, mimetype="text/occi")
        if status.split()[1] != "200":
            return status, {}
        categories, links, attributes = self.headers.parse_resource(body, headers)
        found: dict[str, Any] = {a["name"]: a["value"] for a in attributes}
        found["category"] = [c["scheme"] + c["term"] for c in categories]
        found["links"] = [link["uri"] for link in links]
        return status, found

    def action(self, location: str, action: dict[str, Any]) -> str:
        """Trigger ``action`` (a category of the model) with ``?action=`` (text/occi)."""
        cat = self.mods["occi"].Category({k: action[k] for k in ("term", "scheme", "class")})
        _, headers = self.headers.render_category(cat)
        _, _, status, _ = self.conn.post(
            url=f"{location}?action={action['term']}",
            headers=["Content-Type: text/occi", *headers],
            body="",
        )
        return str(status)

    def delete(self, location: str) -> str:
        return str(self.conn.delete(url=location)[2])


if __name__ == "__main__":
    print(ensure())
