"""User-defined mixins in-process, in each rendering: a definition POSTed to the query
interface (and refused when it clashes), listed there for its owner alone, computes and
storages associated, filtered, replaced and dissociated through its collection (Tashi's tags,
as EC2 shows them), and the definition deleted."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from tashi.domain.tags import Kind
from tashi.frontends.occi.storages import SYSTEM
from tests.occi.conftest import INFRA, Occi
from tests.occi.test_renderings import validate
from tests.occi.test_storage import JSON, OS, new_storage

SCHEME = "http://example.com/occi/my_stuff#"
MINE = f'stufik; scheme="{SCHEME}"; class="mixin"; location="/mixin/stuff/"; title="my stuff"'


def define(occi: Occi, media: str, who: str = "alice", category: str = MINE) -> Any:
    if media == "text/occi":
        return occi.call("POST", "/-/", who, headers={"Content-Type": media, "Category": category})
    if media == JSON:
        term, _, _ = category.partition(";")
        doc = {"mixins": [{"term": term, "scheme": SCHEME, "location": "/mixin/stuff/"}]}
        return occi.call(
            "POST", "/-/", who, content=json.dumps(doc), headers={"Content-Type": JSON}
        )
    return occi.call(
        "POST", "/-/", who, content=f"Category: {category}\n", headers={"Content-Type": media}
    )


def ids(occi: Occi, url: str, who: str = "alice") -> list[str]:
    reply = occi.call("GET", url, who, headers={"Accept": JSON})
    assert reply.status_code == 200, reply.text
    return [r["id"] for r in reply.json().get("resources", [])]


def test_a_mixin_is_defined_in_each_rendering_for_its_owner(occi: Occi) -> None:
    for media in ("text/plain", "text/occi", JSON):
        reply = define(occi, media)
        assert reply.status_code == 200, (media, reply.text)
        model = occi.call("GET", "/-/", headers={"Accept": JSON}).json()
        (mine,) = [m for m in model["mixins"] if m["scheme"] == SCHEME]
        assert mine["term"] == "stufik" and mine["location"] == "/mixin/stuff/"
        plain = occi.call("GET", "/-/", headers={"Accept": "text/plain"}).text
        assert f'Category: stufik; scheme="{SCHEME}"; class="mixin"' in plain
        assert SCHEME not in occi.call("GET", "/-/", "bob").text  # alice's alone
        assert occi.call("GET", "/mixin/stuff/", "bob").status_code == 404
        gone = occi.call(
            "DELETE",
            "/-/",
            content=f'Category: stufik; scheme="{SCHEME}"; class="mixin"\n',
            headers={"Content-Type": "text/plain"},
        )
        assert gone.status_code == 200, gone.text
        assert SCHEME not in occi.call("GET", "/-/").text


def test_a_definition_that_clashes_is_refused(occi: Occi) -> None:
    assert define(occi, "text/plain").status_code == 200
    assert define(occi, "text/plain").status_code == 200  # the same again: nothing changes
    other = MINE.replace('title="my stuff"', 'title="other"')
    assert define(occi, "text/plain", category=other).status_code == 409
    ours = 'x; scheme="http://schemas.ogf.org/occi/infrastructure#"; class="mixin"'
    assert define(occi, "text/plain", category=ours).status_code == 409
    kind = f'y; scheme="{SCHEME}"; class="mixin"; location="/compute/y/"'
    assert define(occi, "text/plain", category=kind).status_code == 409
    taken = f'z; scheme="{SCHEME}"; class="mixin"; location="/mixin/os_tpl/"'
    assert define(occi, "text/plain", category=taken).status_code == 409
    path = f'w; scheme="{SCHEME}"; class="mixin"; location="nowhere"'
    assert define(occi, "text/plain", category=path).status_code == 400
    depends = f'v; scheme="{SCHEME}"; class="mixin"; rel="{INFRA}compute"'
    assert define(occi, "text/plain", category=depends).status_code == 400
    assert define(occi, "text/plain", "bob").status_code == 200  # bob's own, at his place
    missing = occi.call(
        "DELETE",
        "/-/",
        content=f'Category: nothing; scheme="{SCHEME}"; class="mixin"\n',
        headers={"Content-Type": "text/plain"},
    )
    assert missing.status_code == 404


def test_computes_and_storages_carry_a_mixin_as_tags(occi: Occi) -> None:
    assert define(occi, "text/plain").status_code == 200
    compute = occi.create("alice", OS)
    iid = compute.rsplit("/", 1)[1]
    storage = new_storage(occi)
    vid = storage.rsplit("/", 1)[1]
    made = occi.create("alice", OS, f'Category: stufik; scheme="{SCHEME}"; class="mixin"')
    mid = made.rsplit("/", 1)[1]
    assert ids(occi, "/mixin/stuff/") == [mid]

    add = occi.call(
        "POST",
        "/mixin/stuff/",
        headers={"Content-Type": "text/occi", "X-OCCI-Location": f"{compute}, {storage}"},
    )
    assert add.status_code == 200, add.text
    assert sorted(ids(occi, "/mixin/stuff/")) == sorted([iid, mid, vid])
    doc = occi.call("GET", compute, headers={"Accept": JSON}).json()
    assert f"{SCHEME}stufik" in doc["mixins"]
    filtered = ids(occi, f"/compute/?category={quote(SCHEME)}stufik")
    assert sorted(filtered) == sorted([iid, mid])
    tags = occi.http.portal.call(occi.api.service.tags.describe, SYSTEM)  # type: ignore[union-attr]
    tagged = {(t.target.kind, t.target.ref) for t in tags if t.key == f"occi:mixin:{SCHEME}stufik"}
    assert tagged == {(Kind.instance, iid), (Kind.instance, mid), (Kind.volume, vid)}

    put = occi.call(
        "PUT",
        "/mixin/stuff/",
        content=json.dumps({"resources": [storage]}),
        headers={"Content-Type": JSON},
    )
    assert put.status_code == 200, put.text
    assert ids(occi, "/mixin/stuff/") == [vid]
    network = occi.call(
        "POST",
        "/mixin/stuff/",
        content="X-OCCI-Location: /network/1\n",
        headers={"Content-Type": "text/plain"},
    )
    assert network.status_code == 409
    assert occi.call(
        "POST",
        "/mixin/stuff/",
        "bob",
        content=f"X-OCCI-Location: {compute}\n",
        headers={"Content-Type": "text/plain"},
    ).status_code in (403, 404)
    drop = occi.call(
        "DELETE",
        "/mixin/stuff/",
        content=f"X-OCCI-Location: {storage}\n",
        headers={"Content-Type": "text/plain"},
    )
    assert drop.status_code == 200, drop.text
    assert ids(occi, "/mixin/stuff/") == []

    occi.call(
        "POST",
        "/mixin/stuff/",
        content=f"X-OCCI-Location: {compute}\n",
        headers={"Content-Type": "text/plain"},
    )
    gone = occi.call("DELETE", "/-/", headers={"Category": MINE, "Content-Type": "text/occi"})
    assert gone.status_code == 200, gone.text
    assert occi.call("GET", "/mixin/stuff/").status_code == 404
    tags = occi.http.portal.call(occi.api.service.tags.describe, SYSTEM)  # type: ignore[union-attr]
    assert not [t for t in tags if t.key.startswith("occi:mixin:")]


def test_an_update_naming_a_user_mixin_associates_it(occi: Occi) -> None:
    assert define(occi, JSON).status_code == 200
    compute = occi.create("alice", OS)
    storage = new_storage(occi)
    for location in (compute, storage):
        reply = occi.call(
            "POST",
            location,
            headers={
                "Content-Type": "text/occi",
                "Category": f'stufik; scheme="{SCHEME}"; class="mixin"',
            },
        )
        assert reply.status_code == 200, reply.text
        doc = occi.call("GET", location, headers={"Accept": JSON}).json()
        assert f"{SCHEME}stufik" in doc["mixins"]


def test_a_user_mixin_is_valid_gfd226_json(occi: Occi) -> None:
    assert define(occi, "text/plain").status_code == 200
    model = occi.call("GET", "/-/", headers={"Accept": JSON}).json()
    validate(model, "model")
    (mine,) = [m for m in model["mixins"] if m["scheme"] == SCHEME]
    validate(mine, "mixin")
    assert mine["title"] == "my stuff"
