"""The query interface (GFD.223 §8): at ``/-/`` and ``/.well-known/org/ogf/occi/-/``, in
every rendering, with OCCI Core's and Infrastructure's kinds and actions, an ``os_tpl`` per
image and a ``resource_tpl`` per instance type, filtered by a category."""

from __future__ import annotations

import pytest

from tashi.domain.instancetypes import DEFAULTS
from tests.occi.conftest import INFRA, Occi

CORE = "http://schemas.ogf.org/occi/core#"
TASHI_OS = "http://schemas.tashi.apache.org/occi/os_tpl#"


@pytest.mark.parametrize("path", ["/-/", "/.well-known/org/ogf/occi/-/"])
def test_the_query_interface_answers_at_both_paths(occi: Occi, path: str) -> None:
    reply = occi.call("GET", path)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/plain"
    assert reply.headers["server"].endswith("OCCI/1.2")
    lines = reply.text.splitlines()
    assert all(line.startswith("Category: ") for line in lines)
    for term, scheme in [("entity", CORE), ("resource", CORE), ("link", CORE)]:
        assert any(line.startswith(f'Category: {term}; scheme="{scheme}"') for line in lines)


def test_the_text_rendering_lists_kinds_with_locations_attributes_and_actions(occi: Occi) -> None:
    lines = occi.call("GET", "/-/").text.splitlines()
    compute = next(x for x in lines if x.startswith("Category: compute;"))
    assert f'scheme="{INFRA}"' in compute and 'class="kind"' in compute
    assert 'location="/compute/"' in compute
    assert f'rel="{CORE}resource"' in compute
    assert "occi.compute.state{immutable required}" in compute
    assert f"{INFRA[:-1]}/compute/action#stop" in compute
    stop = next(x for x in lines if x.startswith("Category: stop;"))
    assert 'class="action"' in stop and "location=" not in stop
    image = next(x for x in lines if x.startswith("Category: base.qcow2;"))
    assert f'scheme="{TASHI_OS}"' in image and f'rel="{INFRA}os_tpl"' in image


def test_text_occi_puts_the_categories_in_headers(occi: Occi) -> None:
    reply = occi.call("GET", "/-/", headers={"Accept": "text/occi"})
    assert reply.status_code == 200 and reply.headers["content-type"] == "text/occi"
    assert reply.text == "OK\n"
    assert 'compute; scheme="' in reply.headers["category"]


def test_the_json_rendering_has_kinds_mixins_and_actions(occi: Occi) -> None:
    reply = occi.call("GET", "/-/", headers={"Accept": "application/occi+json"})
    assert reply.headers["content-type"] == "application/occi+json"
    doc = reply.json()
    kinds = {k["term"]: k for k in doc["kinds"]}
    assert {"entity", "resource", "link", "compute", "network", "storage"} <= set(kinds)
    assert {"networkinterface", "storagelink"} <= set(kinds)
    assert "location" not in kinds["entity"]  # GFD.223 §4: Entity cannot be instantiated
    compute = kinds["compute"]
    assert compute["parent"] == f"{CORE}resource" and compute["location"] == "/compute/"
    assert compute["attributes"]["occi.compute.state"] == {
        "mutable": False,
        "required": True,
        "type": "string",
        "default": "inactive",
        "pattern": {
            "$schema": "http://json-schema.org/draft-04/schema#",
            "type": "string",
            "enum": ["active", "inactive", "suspended", "error"],
        },
    }
    mixins = {m["scheme"] + m["term"]: m for m in doc["mixins"]}
    assert mixins[f"{TASHI_OS}base.qcow2"]["depends"] == [f"{INFRA}os_tpl"]
    assert mixins[f"{TASHI_OS}other.img"]["applies"] == [f"{INFRA}compute"]
    sizes = [m for m in doc["mixins"] if m.get("depends") == [f"{INFRA}resource_tpl"]]
    assert {m["term"] for m in sizes} == set(DEFAULTS)
    micro = next(m for m in sizes if m["term"] == "t3.micro")
    assert micro["attributes"]["occi.compute.memory"]["default"] == 1.0
    assert micro["attributes"]["occi.compute.cores"]["default"] == 2
    assert "http://schemas.ogf.org/occi/infrastructure/network#ipnetwork" in mixins
    assert {a["term"] for a in doc["actions"]} >= {"start", "stop", "restart", "suspend"}
    stop = next(a for a in doc["actions"] if a["term"] == "stop")
    assert stop["attributes"]["method"]["pattern"]["enum"] == ["graceful", "acpioff", "poweroff"]


def test_a_category_header_filters_the_query_interface(occi: Occi) -> None:
    reply = occi.call(
        "GET",
        "/-/",
        headers={
            "Content-Type": "text/occi",
            "Accept": "text/plain",
            "Category": f'compute; scheme="{INFRA}"; class="kind"',
        },
    )
    assert reply.status_code == 200
    terms = [line.split(";")[0][len("Category: ") :] for line in reply.text.splitlines()]
    assert terms[0] == "compute"
    assert "network" not in terms and "entity" not in terms
    assert {"start", "stop", "restart", "suspend", "base.qcow2", "os_tpl"} <= set(terms)


def test_the_category_query_parameter_filters_too(occi: Occi) -> None:
    reply = occi.call(
        "GET",
        "/-/",
        params={"category": f"{INFRA}resource_tpl"},
        headers={"Accept": "application/occi+json"},
    )
    doc = reply.json()
    assert "kinds" not in doc and "actions" not in doc
    assert len(doc["mixins"]) == len(DEFAULTS) + 1


def test_an_unknown_filter_is_a_bad_request(occi: Occi) -> None:
    reply = occi.call("GET", "/-/", params={"category": "http://example.com/x#nothing"})
    assert reply.status_code == 400 and "unknown category" in reply.text


def test_the_query_interface_is_not_replaced(occi: Occi) -> None:
    assert occi.call("PUT", "/-/").status_code == 405


def test_a_newer_occi_version_is_not_implemented(occi: Occi) -> None:
    reply = occi.call("GET", "/-/", headers={"User-Agent": "client/1 OCCI/1.3"})
    assert reply.status_code == 501 and "OCCI/1.2" in reply.text
    assert occi.call("GET", "/-/", headers={"User-Agent": "c OCCI/1.1"}).status_code == 200
