"""User mixin definitions survive a restart of the cluster manager: a definition made through
the OCCI app is read back by a new context and app over the same state directory (what
``tashi-cm`` builds when it starts; the database, here the service, stays), listed for its
owner alone and still carried by what was tagged; a removal survives too; an unreadable file is
logged, set aside and leaves no definitions; a definition the file does not take is refused."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tashi.frontends.occi import mixinfile
from tashi.frontends.occi.app import create_app
from tests.occi.conftest import BASE, INFRA, Occi, new_context
from tests.occi.test_mixins import MINE, SCHEME, define, ids
from tests.occi.test_storage import JSON, OS

ID = f"{SCHEME}stufik"


@contextmanager
def restarted(occi: Occi) -> Iterator[Occi]:
    """The OCCI front-end as a restarted cluster manager has it: a new context (its mixins
    read from the state directory) and a new app, over the same database."""
    ctx = new_context(occi.api)
    assert ctx.mixins is not occi.ctx.mixins
    with TestClient(create_app(ctx), base_url=BASE) as http:
        yield Occi(http, occi.api, ctx, occi.users)


def state_file(occi: Occi) -> Path:
    return occi.api.settings.cluster_manager.state_dir / mixinfile.FILE


def listed(occi: Occi, who: str = "alice") -> list[dict[str, Any]]:
    model = occi.call("GET", "/-/", who, headers={"Accept": JSON})
    assert model.status_code == 200, model.text
    return [m for m in model.json()["mixins"] if m["scheme"] == SCHEME]


def test_a_definition_survives_a_restart(occi: Occi) -> None:
    applies = f'; rel="{INFRA}os_tpl"'
    assert define(occi, "text/plain", category=MINE + applies).status_code == 200
    made = occi.create("alice", OS, f'Category: stufik; scheme="{SCHEME}"; class="mixin"')
    mid = made.rsplit("/", 1)[1]
    assert state_file(occi).stat().st_mode & 0o777 == 0o600
    before = listed(occi)
    assert len(before) == 1

    with restarted(occi) as again:
        assert listed(again) == before  # term, location, title, depends: all of it
        assert before[0]["location"] == "/mixin/stuff/" and before[0]["title"] == "my stuff"
        assert before[0]["depends"] == [f"{INFRA}os_tpl"]
        assert listed(again, "bob") == []
        assert ids(again, "/mixin/stuff/") == [mid]
        doc = again.call("GET", made, headers={"Accept": JSON}).json()
        assert ID in doc["mixins"]
        assert define(again, "text/plain", category=MINE + applies).status_code == 200
        other = MINE.replace('title="my stuff"', 'title="other"')
        assert define(again, "text/plain", category=other).status_code == 409


def test_a_removal_survives_a_restart(occi: Occi) -> None:
    assert define(occi, JSON).status_code == 200
    assert define(occi, JSON, "bob").status_code == 200
    with restarted(occi) as again:
        gone = again.call("DELETE", "/-/", headers={"Category": MINE, "Content-Type": "text/occi"})
        assert gone.status_code == 200, gone.text
        assert listed(again) == []
    with restarted(occi) as third:
        assert listed(third) == []
        assert third.call("GET", "/mixin/stuff/").status_code == 404
        assert [m["term"] for m in listed(third, "bob")] == ["stufik"]  # bob's stays


@pytest.mark.parametrize(
    "content",
    [b'{"version": 1, "users": {"2": [{"te', b'{"version": 1, "users": {"x": []}}', b"\xff\xfe"],
    ids=["cut short", "not a user id", "not UTF-8"],
)
def test_an_unreadable_file_is_reported_and_set_aside(
    occi: Occi, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    assert define(occi, "text/plain").status_code == 200
    path = state_file(occi)
    path.write_bytes(content)
    with caplog.at_level(logging.ERROR), restarted(occi) as again:
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert any(str(path) in e and "unreadable" in e for e in errors), errors
        assert listed(again) == []
        (aside,) = path.parent.glob(f"{mixinfile.FILE}.unreadable-*")
        assert aside.read_bytes() == content  # kept for an administrator
        assert not path.exists()
        assert define(again, "text/plain").status_code == 200
        assert json.loads(path.read_bytes())["users"]


def test_a_definition_the_file_refuses_is_not_made(occi: Occi, tmp_path: Path) -> None:
    occi.ctx.mixins.path = tmp_path / "no such directory" / mixinfile.FILE
    reply = define(occi, "text/plain")
    assert reply.status_code == 502, reply.text  # a failure of what Tashi depends on
    assert "cannot save" not in reply.text  # the detail is logged, not told
    assert listed(occi) == []


def test_a_file_over_the_bound_keeps_the_first_definitions(tmp_path: Path) -> None:
    entry = {"scheme": SCHEME, "title": "", "location": "", "depends": [], "applies": []}
    doc = {"version": 1, "users": {"7": [{**entry, "term": f"t{n}"} for n in range(5)]}}
    path = tmp_path / mixinfile.FILE
    path.write_text(json.dumps(doc))
    (mine,) = mixinfile.read(path, 3).values()
    assert [m.term for m in mine.values()] == ["t0", "t1", "t2"]
