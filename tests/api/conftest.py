"""A real cluster-manager HTTP app over a real store, driven with Starlette's TestClient.

``api`` is parametrised over the in-memory fake and SQLite; PostgreSQL/MariaDB runs of the
same API live in the store contract tests and the CLI tests.
"""

from __future__ import annotations

import configparser
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tashi.clustermanager.database import Database
from tashi.clustermanager.hosts.nodes import NodeGateway
from tashi.clustermanager.service import ClusterService, build_service
from tashi.config.clustermanager import (
    ClusterManagerServiceSettings,
    ClusterManagerSettings,
    VfsSettings,
)
from tashi.config.settings import Settings
from tashi.domain.clock import Clock
from tashi.frontends.rest.app import create_app
from tashi.storage.contract import Store
from tashi.storage.memory import MemoryStore
from tashi.web.limits import HttpLimits

QCOW2_HEADER = b"QFI\xfb" + b"\x00\x00\x00\x03" + b"\x00" * 16 + (64 * 2**20).to_bytes(8, "big")


@dataclass
class Api:
    """A client of the app plus what a test needs to act as different users."""

    http: TestClient
    service: ClusterService
    settings: Settings
    admin_password: str

    def login(self, name: str, password: str) -> dict[str, str]:
        reply = self.http.post("/v1/auth/token", json={"username": name, "password": password})
        assert reply.status_code == 200, reply.text
        return {"Authorization": f"Bearer {reply.json()['token']}"}

    @functools.cached_property
    def admin(self) -> dict[str, str]:
        return self.login("admin", self.admin_password)

    def user(self, name: str, *, role: str = "user", priority: int = 0) -> dict[str, str]:
        password = f"{name}-secret-pw"
        reply = self.http.post(
            "/v1/users",
            json={"name": name, "password": password, "role": role, "priority": priority},
            headers=self.admin,
        )
        assert reply.status_code == 201, reply.text
        return self.login(name, password)

    def call(self, method: str, url: str, who: dict[str, str], **kw: Any) -> Any:
        return self.http.request(method, url, headers=who, **kw)


def make_settings(tmp: Path, **service: Any) -> Settings:
    state = tmp / "state"
    vfs = tmp / "vfs"
    (vfs / "images").mkdir(parents=True)
    (vfs / "images" / "base.qcow2").write_bytes(QCOW2_HEADER)
    (vfs / "images" / "other.img").write_bytes(b"\0" * 4096)
    (vfs / "images" / "base.qcow2.kernel").write_bytes(b"\0" * 10)  # a sidecar, not an image
    return Settings(
        cluster_manager=ClusterManagerSettings(state_dir=state),
        cluster_manager_service=replace(ClusterManagerServiceSettings(), **service),
        vfs=VfsSettings(prefix=vfs),
    )


def make_store(kind: str, settings: Settings) -> Store:
    if kind == "memory":
        return MemoryStore()
    from tashi.storage.sql.store import open_store as open_sql_store

    return open_sql_store(settings.sql, settings.cluster_manager.state_dir)


def start_api(
    store_kind: str,
    tmp: Path,
    *,
    clock: Clock | None = None,
    nodes: Callable[[Database], NodeGateway] | None = None,
    **service: Any,
) -> Iterator[Api]:
    """The app over a store of ``store_kind`` (``nodes``: its node gateway, default none)."""
    settings = make_settings(tmp, **service)
    settings.cluster_manager.state_dir.mkdir(mode=0o700)
    store = make_store(store_kind, settings)
    service_ = build_service(settings, store, clock=clock, nodes=nodes)
    creds = settings.cluster_manager.state_dir / "admin-credentials.cfg"
    app = create_app(service_, HttpLimits.of(settings.cluster_manager_service))
    with TestClient(app) as http:
        http.portal.call(
            functools.partial(service_.auth.ensure_admin, creds, host="localhost", port=9882)
        )  # type: ignore[union-attr]
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(creds)
        api = Api(http, service_, settings, parser["AccessClusterManager"]["password"])
        api.call("POST", "/v1/networks", api.admin, json={"id": 1, "name": "default"})
        yield api
    service_.close()


@pytest.fixture(params=["memory", "sqlite"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    yield from start_api(request.param, tmp_path)
