"""Whatever a client sends, reading it either gives a ``Parsed`` or raises a ``TashiError``
(answered with its status), never anything else (a 500): random bodies and headers through
``render.read`` in every media type, and random requests through the app."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tashi.domain.errors import TashiError
from tashi.frontends.occi import render
from tests.occi.conftest import Occi

MEDIA = st.sampled_from(
    ["text/plain", "text/occi", "application/occi+json", "application/json", "", "text/x"]
)
NAMES = st.sampled_from(["Category", "X-OCCI-Attribute", "Link", "X-OCCI-Location", "Accept"])
PIECES = st.sampled_from(
    [
        '"',
        ";",
        ",",
        "=",
        "<",
        ">",
        "\\",
        "#",
        "compute",
        "scheme=",
        "class=",
        "kind",
        " ",
        "1.5",
        "occi.core.title",
        "{",
        "}",
        "[",
        "]",
        ":",
        "\n",
        "true",
        "http://x#y",
    ]
)
TEXTS = st.lists(PIECES, max_size=30).map("".join) | st.text(max_size=60)


@settings(max_examples=400, deadline=None)
@given(media=MEDIA, body=TEXTS, headers=st.lists(st.tuples(NAMES, TEXTS), max_size=4))
def test_reading_anything_parses_or_refuses(
    media: str, body: str, headers: list[tuple[str, str]]
) -> None:
    with contextlib.suppress(TashiError):
        render.read(media, body.encode(), headers)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    path=st.sampled_from(["/-/", "/compute/", "/compute/1", "/network/", "/mixin/os_tpl/", "/"]),
    action=st.sampled_from(["", "?action=stop", "?action=x", "?category=a%23b", "?page=0"]),
    media=MEDIA,
    body=TEXTS,
)
def test_no_request_is_a_500(
    occi: Occi, method: str, path: str, action: str, media: str, body: str
) -> None:
    reply = occi.call(method, path + action, content=body.encode(), headers={"Content-Type": media})
    assert reply.status_code != 500, reply.text
