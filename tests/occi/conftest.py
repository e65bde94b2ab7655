"""The OCCI app in-process over a real cluster-manager service (the in-memory store, the
image store of ``tests/api``), driven with Starlette's TestClient as users (``alice``,
``bob``: made at their first use) and the admin, with HTTP Basic and with bearer tokens."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tashi.config.ec2 import InstanceTypesSettings
from tashi.config.occi import OcciSettings
from tashi.frontends.occi.app import create_app
from tashi.frontends.occi.context import OcciContext
from tests.api.conftest import Api, start_api

INFRA = "http://schemas.ogf.org/occi/infrastructure#"
COMPUTE_KIND = f'compute; scheme="{INFRA}"; class="kind"'
BASE = "http://occi.test"


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@dataclass
class Occi:
    http: TestClient
    api: Api
    ctx: OcciContext
    users: set[str] = field(default_factory=set)

    def as_(self, who: str) -> dict[str, str]:
        """HTTP Basic of ``who`` (made at its first use: a password hash costs 0.1 s)."""
        if who == "admin":
            return basic("admin", self.api.admin_password)
        if who not in self.users:
            made = self.api.call(
                "POST",
                "/v1/users",
                self.api.admin,
                json={"name": who, "password": f"{who}-secret-pw"},
            )
            assert made.status_code == 201, made.text
            self.users.add(who)
        return basic(who, f"{who}-secret-pw")

    def call(self, method: str, url: str, who: str = "alice", **kw: Any) -> Any:
        headers = {**self.as_(who), **kw.pop("headers", {})}
        return self.http.request(method, url, headers=headers, **kw)

    def create(self, who: str = "alice", *lines: str, media: str = "text/plain") -> str:
        """A new compute's location (its rendering: ``lines`` after the kind)."""
        body = "\n".join([f"Category: {COMPUTE_KIND}", *lines]) + "\n"
        reply = self.call("POST", "/compute/", who, content=body, headers={"Content-Type": media})
        assert reply.status_code == 201, reply.text
        return str(reply.headers["location"])


def new_context(api: Api) -> OcciContext:
    """The OCCI front-end's context as the cluster manager builds it when it starts (the
    users' mixins read from its state directory)."""
    state_dir = api.settings.cluster_manager.state_dir
    return OcciContext.build(
        api.service, OcciSettings(), InstanceTypesSettings(), state_dir=state_dir
    )


@pytest.fixture
def occi(tmp_path: Path) -> Iterator[Occi]:
    for api in start_api("memory", tmp_path):  # the store is not what is tested here
        ctx = new_context(api)
        with TestClient(create_app(ctx), base_url=BASE) as http:
            yield Occi(http, api, ctx)
