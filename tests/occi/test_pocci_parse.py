"""pOCCI's parsers (``tests/occi/pocci.py``: the ones its compliance checks and its
``pOCCI-parse`` validator use, strict about quoting, URIs and duplicates) read every text
rendering the in-process app writes — the model, a compute with its links, a network, a disk,
the collections — and find in them what the JSON rendering of the same thing holds."""

from __future__ import annotations

from typing import Any

import pytest

from tests.occi import pocci
from tests.occi.conftest import Occi

JSON = "application/occi+json"
OS = 'Category: base.qcow2; scheme="http://schemas.tashi.apache.org/occi/os_tpl#"; class="mixin"'
TEXT = ("text/plain", "text/occi")


def parsed(occi: Occi, path: str, mimetype: str, what: str) -> Any:
    """``path`` read in ``mimetype``, parsed by pOCCI's renderer for it (``what``: categories,
    locations or resource)."""
    reply = occi.call("GET", path, headers={"Accept": mimetype})
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].split(";")[0] == mimetype
    renderer = pocci.modules()["render"].create_renderer(mimetype)
    body = reply.text.splitlines()
    headers = [f"{k}: {v}" for k, v in reply.headers.multi_items()]
    return getattr(renderer, f"parse_{what}")(body, headers)


@pytest.mark.parametrize("mimetype", TEXT)
def test_pocci_reads_the_model(occi: Occi, mimetype: str) -> None:
    model = occi.call("GET", "/-/", headers={"Accept": JSON}).json()
    expected = {
        (c["scheme"], c["term"]) for key in ("kinds", "mixins", "actions") for c in model[key]
    }
    categories = parsed(occi, "/-/", mimetype, "categories")
    assert {(c["scheme"], c["term"]) for c in categories} == expected
    compute = next(c for c in categories if c["term"] == "compute" and c["class"] == "kind")
    assert compute["location"] == "/compute/"
    assert len(compute["actions"]) == 4


@pytest.mark.parametrize("mimetype", TEXT)
def test_pocci_reads_entities_and_collections(occi: Occi, mimetype: str) -> None:
    location = occi.create("alice", OS, 'X-OCCI-Attribute: occi.core.title="parsed"')
    iid = location.rsplit("/", 1)[1]
    doc = occi.call("GET", location, headers={"Accept": JSON}).json()
    categories, links, attributes = parsed(occi, location, mimetype, "resource")
    assert [c["scheme"] + c["term"] for c in categories] == [doc["kind"], *doc["mixins"]]
    values = {a["name"]: a["value"] for a in attributes}
    assert values == doc["attributes"]
    targets = {link["uri"] for link in links}
    assert {"/network/1", f"/storage/{iid}-0"} <= targets  # and the action links
    for path in ("/network/1", f"/storage/{iid}-0", f"/link/storagelink/{iid}-0"):
        _, _, attrs = parsed(occi, path, mimetype, "resource")
        assert attrs, path
    for path in ("/compute/", "/", "/link/"):
        listed = parsed(occi, path, mimetype, "locations")
        assert all(url.startswith("http://occi.test/") for url in listed), listed
    assert parsed(occi, "/compute/", mimetype, "locations") == [location]
    uris = parsed(occi, "/compute/", "text/uri-list", "locations")
    assert uris == [location]
