"""The file that keeps every user's OCCI mixin definitions (``usermixins.MixinStore``) across
restarts of the cluster manager: ``<stateDir>/occi-mixins.json``, mode 0600.

It is rewritten whole at every definition and removal (a temporary file, ``fsync``, renamed
over the old one, the directory flushed), so a crash leaves the old file or the new one, never
half of one. It is read once, when the OCCI front-end is built: a missing file is no
definitions; one that cannot be read or parsed is logged as an error, moved aside
(``occi-mixins.json.unreadable-<UTC time>``, for an administrator to look at) and the front-end
starts with none, so the next definition does not overwrite what it held.

Its content: ``{"version": 1, "users": {"<user id>": [{"term", "scheme", "title", "location",
"depends", "applies"}, …]}}``. Definitions of a user removed from Tashi stay in it, harmlessly:
user ids are never reused, so no one sees them again.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tashi.domain.errors import BackendFailure, Dependency, InvalidInput
from tashi.domain.ids import UserId
from tashi.frontends.occi.categories import Category

log = logging.getLogger(__name__)

#: the file's name in the cluster manager's state directory
FILE = "occi-mixins.json"
VERSION = 1

Defined = Mapping[UserId, Mapping[str, Category]]


class Unreadable(InvalidInput):
    """The file's content is not what ``write`` writes."""


def read(path: Path, limit: int) -> dict[UserId, dict[str, Category]]:
    """The definitions ``path`` keeps (at most ``limit`` a user); none if there is no such
    file, or if it cannot be read (logged, the file moved aside)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        _set_aside(path, str(exc))
        return {}
    try:
        defined = parse(json.loads(raw))
    except (Unreadable, ValueError, RecursionError) as exc:  # JSON's and UTF-8's: ValueError
        _set_aside(path, str(exc))
        return {}
    for user, mine in defined.items():
        if len(mine) > limit:
            log.warning(
                "user %d has %d OCCI mixins in %s: the first %d are kept"
                " (and alone saved at the next change)",
                user,
                len(mine),
                path,
                limit,
            )
            defined[user] = dict(list(mine.items())[:limit])
    return defined


def _set_aside(path: Path, why: str) -> None:
    aside = path.with_name(
        f"{path.name}.unreadable-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    )
    try:
        os.replace(path, aside)
    except OSError as exc:
        aside = path
        log.error("cannot move %s aside: %s", path, exc)
    log.error(
        "the OCCI mixin definitions %s are unreadable (%s): every user's are left out (kept in %s);"
        " users define them again, or an administrator repairs the file and restarts tashi-cm",
        path,
        why,
        aside,
    )


def parse(doc: Any) -> dict[UserId, dict[str, Category]]:
    """The definitions of a document ``write`` wrote; ``Unreadable`` if it is not one."""
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        raise Unreadable(f"not a version {VERSION} document of OCCI mixin definitions")
    users = doc.get("users")
    if not isinstance(users, dict):
        raise Unreadable("no 'users' object")
    defined: dict[UserId, dict[str, Category]] = {}
    for user, entries in users.items():
        if not user.isdigit() or not isinstance(entries, list):
            raise Unreadable(f"'users' has {user!r}: not a user id with a list of mixins")
        mixins = (_mixin(e) for e in entries)
        defined[UserId(int(user))] = {m.id: m for m in mixins}
    return defined


def _mixin(entry: Any) -> Category:
    if not isinstance(entry, dict):
        raise Unreadable(f"a mixin is an object, not {entry!r}")
    texts = {k: entry.get(k) for k in ("term", "scheme", "title", "location")}
    lists = {k: entry.get(k) for k in ("depends", "applies")}
    if not all(isinstance(v, str) for v in texts.values()) or not all(
        isinstance(v, list) and all(isinstance(x, str) for x in v) for v in lists.values()
    ):
        raise Unreadable(
            "a mixin has strings term, scheme, title, location and lists of strings"
            f" depends, applies: {entry!r}"
        )
    return Category(
        entry["term"],
        entry["scheme"],
        "mixin",
        entry["title"],
        depends=tuple(entry["depends"]),
        applies=tuple(entry["applies"]),
        location=entry["location"],
    )


def document(defined: Defined) -> dict[str, Any]:
    """What ``write`` writes of ``defined``."""
    users = {
        str(user): [
            {
                "term": m.term,
                "scheme": m.scheme,
                "title": m.title,
                "location": m.location or "",
                "depends": list(m.depends),
                "applies": list(m.applies),
            }
            for m in mine.values()
        ]
        for user, mine in sorted(defined.items())
        if mine
    }
    return {"version": VERSION, "users": users}


def write(path: Path, defined: Defined) -> None:
    """Replace ``path`` by the definitions ``defined``, durably; ``BackendFailure`` (the file
    system) if it cannot be written, the old file then left as it was."""
    data = json.dumps(document(defined), indent=1).encode()
    tmp = path.with_name(path.name + ".new")
    try:
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _flush_dir(path.parent)
    except OSError as exc:
        message = f"cannot save the OCCI mixin definitions in {path}: {exc}"
        raise BackendFailure(message, failed=Dependency.file_system) from exc


def _flush_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
