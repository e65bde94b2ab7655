"""Bad input and refused requests get GFD.223's status codes with a sentence in the rendering
asked for, never a 500: 400, 401, 403, 404, 405, 406, 409, 415, 501."""

from __future__ import annotations

import base64
import json

import pytest

from tests.occi.conftest import COMPUTE_KIND, Occi

INFRA = "http://schemas.ogf.org/occi/infrastructure#"
JSON_TYPE = "application/occi+json"
ACTION = "http://schemas.ogf.org/occi/infrastructure/compute/action#"
KIND = '{"kind": "http://schemas.ogf.org/occi/infrastructure#compute"'
OS = 'Category: base.qcow2; scheme="http://schemas.tashi.apache.org/occi/os_tpl#"; class="mixin"'


def _post(occi: Occi, body: str, media: str = "text/plain", url: str = "/compute/") -> object:
    return occi.call("POST", url, content=body, headers={"Content-Type": media})


@pytest.mark.parametrize(
    "body",
    [
        "Category compute\n",  # no colon
        "Hello: world\n",  # not an OCCI line
        'Category: compute; scheme="http://schemas.ogf.org/occi/infrastructure#; class="kind"\n',
        "Category: compute; class=kind\n",  # no scheme
        'Category: compute; scheme="x#"; class="kind"\n',  # no such category
        f"Category: {COMPUTE_KIND}\n{OS}\nX-OCCI-Attribute: occi.core.title=unquoted\n",
        f'Category: {COMPUTE_KIND}\n{OS}\nX-OCCI-Attribute: occi.compute.cores="two"\n',
        f'Category: {COMPUTE_KIND}\n{OS}\nX-OCCI-Attribute: occi.compute.hostname="bad name!"\n',
        f'Category: {COMPUTE_KIND}\n{OS}\nLink: /network/1; rel="x"\n',
        f'Category: network; scheme="{INFRA}"; class="kind"\n{OS}\n',
        f'Category: {COMPUTE_KIND}\nCategory: stop; scheme="{ACTION}"; class="kind"\n',
        'X-OCCI-Attribute: occi.core.title="no kind"\n',
        "\xff\xfe",
    ],
)
def test_a_bad_text_rendering_is_a_400(occi: Occi, body: str) -> None:
    reply = occi.call(
        "POST", "/compute/", content=body.encode("latin-1"), headers={"Content-Type": "text/plain"}
    )
    assert reply.status_code == 400, reply.text
    assert reply.headers["content-type"] == "text/plain" and reply.text.strip()


@pytest.mark.parametrize(
    "body",
    [
        "{",
        "[]",
        '{"kind": 3}',
        KIND + ', "attributes": []}',
        KIND + ', "links": [{"target": {}}]}',
        KIND + ', "attributes": {"a": {"b": 1}}}',
    ],
)
def test_a_bad_json_rendering_is_a_400_in_json(occi: Occi, body: str) -> None:
    reply = occi.call(
        "POST",
        "/compute/",
        content=body,
        headers={"Content-Type": "application/occi+json", "Accept": "application/occi+json"},
    )
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["status"] == 400 and error["message"]


def test_an_unknown_media_type_is_a_415(occi: Occi) -> None:
    assert _post(occi, "<compute/>", "application/xml").status_code == 415


def test_an_unacceptable_accept_is_a_406(occi: Occi) -> None:
    reply = occi.call("GET", "/-/", headers={"Accept": "application/xml"})
    assert reply.status_code == 406 and "text/plain" in reply.text
    ok = occi.call("GET", "/-/", headers={"Accept": "application/xml;q=0.9, text/occi;q=0.5"})
    assert ok.status_code == 200 and ok.headers["content-type"] == "text/occi"
    anything = occi.call("GET", "/-/", headers={"Accept": "*/*"})
    assert anything.headers["content-type"] == "text/plain"


@pytest.mark.parametrize(
    ("method", "url", "allowed"),
    [
        ("PUT", "/compute/", "GET, POST, DELETE"),
        ("PATCH", "/compute/1", "GET, POST, PUT, DELETE"),
        ("POST", "/resource/", "GET"),
        ("DELETE", "/", "GET"),
    ],
)
def test_a_method_a_path_does_not_take_is_a_405_with_allow(
    occi: Occi, method: str, url: str, allowed: str
) -> None:
    reply = occi.call(method, url)
    assert reply.status_code == 405, reply.text
    assert reply.headers["allow"] == allowed


@pytest.mark.parametrize(
    "url", ["/nothing", "/compute/abc", "/compute/99", "/network/42", "/storage/x"]
)
def test_what_does_not_exist_is_a_404(occi: Occi, url: str) -> None:
    reply = occi.call("GET", url, headers={"Accept": "text/occi"})
    assert reply.status_code == 404 and reply.headers["content-type"] == "text/occi"


def test_without_credentials_it_is_a_401_that_says_how(occi: Occi) -> None:
    reply = occi.http.get("/-/")
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"].startswith("Basic")
    occi.as_("alice")  # she exists; her password is not "nope"
    wrong = occi.http.get(
        "/-/", headers={"Authorization": "Basic " + base64.b64encode(b"alice:nope").decode()}
    )
    assert wrong.status_code == 401
    garbled = occi.http.get("/-/", headers={"Authorization": "Basic !!!"})
    assert garbled.status_code == 401


def test_a_bearer_token_of_the_rest_api_works(occi: Occi) -> None:
    token = occi.api.user("carol")["Authorization"]
    assert occi.http.get("/-/", headers={"Authorization": token}).status_code == 200
    assert occi.http.get("/-/", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_basic_logs_in_once_and_keeps_the_token(occi: Occi) -> None:
    for _ in range(3):
        assert occi.call("GET", "/-/", "bob").status_code == 200
    [token] = occi.ctx.tokens.values()
    assert occi.http.get("/-/", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert occi.call("GET", "/-/", "alice").status_code == 200
    assert len(occi.ctx.tokens) == 2


def test_a_conflicting_state_is_a_409(occi: Occi) -> None:
    location = occi.create("alice", OS)
    reply = occi.call(
        "POST",
        f"{location}?action=suspend",
        content=f'Category: suspend; scheme="{ACTION}"; class="action"\n',
        headers={"Content-Type": "text/plain"},
    )
    assert reply.status_code == 409 and "Pending" in reply.text


def test_a_title_with_control_characters_is_refused(occi: Occi) -> None:
    doc = {
        "kind": f"{INFRA}compute",
        "mixins": ["http://schemas.tashi.apache.org/occi/os_tpl#base.qcow2"],
        "title": "two\nlines",
    }
    reply = occi.call(
        "POST", "/compute/", content=json.dumps(doc), headers={"Content-Type": JSON_TYPE}
    )
    assert reply.status_code == 400 and "printable" in reply.text
    assert occi.call("GET", "/compute/").text == ""  # nothing was made


def test_an_attribute_compute_defines_but_tashi_sets_is_a_409(occi: Occi) -> None:
    location = occi.create("alice", OS)
    speed = occi.call(
        "POST",
        location,
        content="X-OCCI-Attribute: occi.compute.speed=3.0\n",
        headers={"Content-Type": "text/plain"},
    )
    assert speed.status_code == 409


@pytest.mark.parametrize("value", ["Infinity", "NaN", "1e400", str(10**400), "-1", "0.5"])
def test_absurd_sizes_are_a_400(occi: Occi, value: str) -> None:
    body = (
        '{"kind": "http://schemas.ogf.org/occi/infrastructure#compute",'
        ' "mixins": ["http://schemas.tashi.apache.org/occi/os_tpl#base.qcow2"],'
        f' "attributes": {{"occi.compute.memory": {value}, "occi.compute.cores": {value}}}}}'
    )
    reply = occi.call("POST", "/compute/", content=body, headers={"Content-Type": JSON_TYPE})
    assert reply.status_code == 400, reply.text


def test_head_is_the_head_of_get(occi: Occi) -> None:
    reply = occi.call("HEAD", "/-/", headers={"Accept": "application/occi+json"})
    assert reply.status_code == 200 and reply.content == b""
    assert reply.headers["content-type"] == "application/occi+json"
    assert occi.call("OPTIONS", "/-/").status_code == 405
