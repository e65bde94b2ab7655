"""The renderings on their own: every JSON answer validates against GFD.226's schema
(``occi-schema.json``, the spec's appendix, its ``#definitions/…`` references written as the
JSON pointers they mean), and the text rendering's syntax (GFD.229 §3) reads back what it
writes, quotes and commas included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from tashi.frontends.occi import text
from tashi.frontends.occi.categories import COMPUTE, STOP
from tashi.frontends.occi.errors import OcciError
from tashi.frontends.occi.parsed import CategoryRef
from tests.occi.conftest import COMPUTE_KIND, Occi

SCHEMA = json.loads((Path(__file__).parent / "occi-schema.json").read_text())
JSON = "application/occi+json"
OS = 'Category: base.qcow2; scheme="http://schemas.tashi.apache.org/occi/os_tpl#"; class="mixin"'


def validate(doc: Any, definition: str) -> None:
    schema = {**SCHEMA, "$ref": f"#/definitions/{definition}"}
    schema.pop("anyOf")
    jsonschema_rs.Draft4Validator(schema).validate(doc)


def test_the_query_interface_is_an_occi_model(occi: Occi) -> None:
    doc = occi.call("GET", "/-/", headers={"Accept": JSON}).json()
    validate(doc, "model")
    for kind in doc["kinds"]:
        validate(kind, "kind")
    for mixin in doc["mixins"]:
        validate(mixin, "mixin")
    for action in doc["actions"]:
        validate(action, "action")


def test_entities_and_collections_validate(occi: Occi) -> None:
    location = occi.create("alice", OS, 'X-OCCI-Attribute: occi.core.summary="s"')
    iid = location.rsplit("/", 1)[1]
    compute = occi.call("GET", location, headers={"Accept": JSON}).json()
    validate(compute, "resource")
    assert len(compute["links"]) == 2
    for path, definition in [
        ("/network/1", "resource"),
        (f"/storage/{iid}-0", "resource"),
        (f"/link/networkinterface/{iid}-0", "link"),
        (f"/link/storagelink/{iid}-0", "link"),
        ("/compute/", "resource_collection"),
        ("/link/", "link_collection"),
        ("/", "model"),
    ]:
        reply = occi.call("GET", path, headers={"Accept": JSON})
        assert reply.status_code == 200, reply.text
        validate(reply.json(), definition)
    with pytest.raises(jsonschema_rs.ValidationError):
        validate({"kind": 1}, "resource")  # the check can fail


def test_the_action_invocation_the_spec_shows_is_read() -> None:
    from tashi.frontends.occi import jsonrender

    doc = {"action": STOP.id, "attributes": {"method": "graceful"}}
    validate(doc, "action_invocation")
    parsed = jsonrender.parse(json.dumps(doc).encode())
    assert parsed.action == STOP.id and parsed.attributes == {"method": "graceful"}


@pytest.mark.parametrize(
    "value", ["plain", 'with "quotes"', "back\\slash", "comma, and; semicolon", "ünï"]
)
def test_strings_quote_and_read_back(value: str) -> None:
    line = f"occi.core.title={text.value(value)}"
    assert text.parse_attribute(line) == ("occi.core.title", value)
    parsed = text.parse([("X-OCCI-Attribute", f"{line}, occi.compute.cores=2")])
    assert parsed.attributes == {"occi.core.title": value, "occi.compute.cores": 2}


@pytest.mark.parametrize(
    ("raw", "value"),
    [("2", 2), ("2.5", 2.5), ("-1", -1), ("1e3", 1000.0), ("true", True), ("false", False)],
)
def test_numbers_and_booleans_are_unquoted(raw: str, value: object) -> None:
    assert text.parse_attribute(f"a.b={raw}") == ("a.b", value)
    if raw != "1e3":
        assert text.value(value) == raw


@pytest.mark.parametrize("raw", ["a.b=unquoted", 'a.b="open', "=1", "a b=1"])
def test_bad_attributes_are_refused(raw: str) -> None:
    with pytest.raises(OcciError) as refused:
        text.parse([("X-OCCI-Attribute", raw)])
    assert refused.value.status == 400


def test_a_category_line_reads_with_or_without_quoted_class() -> None:
    for cls in ('"kind"', "kind"):
        ref = text.parse_category(f'compute; scheme="{COMPUTE.scheme}"; class={cls}')
        assert ref == CategoryRef("compute", COMPUTE.scheme, "kind")
    full = text.category(COMPUTE)
    again = text.parse_category(full)  # title, rel, location, attributes, actions are skipped
    assert again.id == COMPUTE.id
    assert text.split(f"{COMPUTE_KIND}, {full}", ",")[1] == full


def test_a_link_line_reads_its_target_kind_and_attributes() -> None:
    link = text.parse_link(
        '</network/1>; rel="http://schemas.ogf.org/occi/infrastructure#network";'
        ' category="http://schemas.ogf.org/occi/infrastructure#networkinterface";'
        ' occi.networkinterface.mac="52:54:00:00:00:01"'
    )
    assert link.target == "/network/1"
    assert link.kind.endswith("#networkinterface")
    assert link.attributes == {"occi.networkinterface.mac": "52:54:00:00:00:01"}


def test_text_occi_groups_values_in_one_header_each() -> None:
    lines = [("Category", 'a; scheme="s#"; class="kind"'), ("X-OCCI-Attribute", "x=1")]
    lines.append(("X-OCCI-Attribute", 'y="2, 3"'))
    grouped = dict(text.headers(lines))
    assert grouped["X-OCCI-Attribute"] == 'x=1, y="2, 3"'
    assert text.parse(grouped.items()).attributes == {"x": 1, "y": "2, 3"}
