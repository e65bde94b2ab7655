"""The listing verbs show everything by default, read page by page: the in-process ``tashi``
(small pages) against a real ``tashi-cm`` (the harness of ``test_client_live.py``, its own
cluster manager); ``--limit``/``--after`` show one page."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tashi.apiclient import client as apiclient
from tashi.apiclient.client import ApiClient
from tests.client.conftest import Cli
from tests.client.test_client_live import Cluster
from tests.client.test_client_live import cluster as live_cluster  # noqa: F401  (the fixture)

HOSTS = [f"node{n}" for n in range(5)]


@pytest.fixture(scope="module")
def filled(live_cluster: Cluster) -> Cluster:  # noqa: F811
    for name in HOSTS:
        live_cluster.ok("addHost", "--host", name)
    live_cluster.ok("createMany", "--basename", "web", "--count", "5", "--disks", "base.qcow2")
    return live_cluster


@pytest.fixture
def pages(
    filled: Cluster, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[str, dict[str, Any]]]:
    """The in-process CLI as the admin, reading 2 items a page; the pages it asked for."""
    monkeypatch.setenv("TASHI_CONFIG", str(filled.admin_config))
    monkeypatch.setattr(apiclient, "PAGE", 2)
    asked: list[tuple[str, dict[str, Any]]] = []
    for verb in ("get_hosts", "get_instances", "get_networks", "list_access_keys"):
        real = getattr(ApiClient, verb)

        async def recorded(self: ApiClient, *a: Any, _real: Any = real, _v: str = verb, **k: Any):  # type: ignore[no-untyped-def]
            asked.append((_v, {"args": a, **k}))
            return await _real(self, *a, **k)

        monkeypatch.setattr(ApiClient, verb, recorded)
    return asked


def names(out: str) -> list[str]:
    return [line.split()[1] for line in out.splitlines()[2:]]


def test_get_hosts_shows_every_host_across_pages(
    cli: Cli, pages: list[tuple[str, dict[str, Any]]]
) -> None:
    ran = cli("getHosts")
    assert ran.status == 0, ran.err
    assert names(ran.out) == HOSTS
    assert len([p for p in pages if p[0] == "get_hosts"]) == 3  # 2 + 2 + 1


def test_get_instances_shows_every_instance_across_pages(
    cli: Cli, pages: list[tuple[str, dict[str, Any]]]
) -> None:
    ran = cli("getInstances", "--hide-all", "--show-id", "--show-name")
    assert ran.status == 0, ran.err
    assert [line.split()[1] for line in ran.out.splitlines()[2:]] == [f"web-{n}" for n in range(5)]
    assert len([p for p in pages if p[0] == "get_instances"]) == 3
    layout = cli("getVmLayout")
    assert layout.status == 0, layout.err
    assert names(layout.out) == HOSTS


def test_limit_and_after_show_one_page(cli: Cli, pages: list[tuple[str, dict[str, Any]]]) -> None:
    first = cli("getHosts", "--limit", "2", "--json")
    assert first.status == 0, first.err
    shown = [h["name"] for h in json.loads(first.out)]
    assert shown == HOSTS[:2]
    last_id = json.loads(first.out)[-1]["id"]
    rest = cli("getHosts", "--after", str(last_id))
    assert names(rest.out) == HOSTS[2:]
    assert cli("getInstances", "--limit", "0").status == 2
    assert cli("getHosts", "--after", "-1").status == 2


def test_the_other_lists_show_everything_across_pages(
    cli: Cli, pages: list[tuple[str, dict[str, Any]]]
) -> None:
    for n in (2, 3, 4):
        assert cli("addNetwork", "--id", str(n), "--name", f"lab{n}").status == 0
    made = [cli("createAccessKey", "--json") for _ in range(3)]
    keys = [json.loads(m.out)["accessKeyId"] for m in made]
    networks = cli("getNetworks", "--json")
    assert [n["id"] for n in json.loads(networks.out)] == [1, 2, 3, 4]
    assert len([p for p in pages if p[0] == "get_networks"]) == 3  # 2 + 2 + 0
    listed = cli("listAccessKeys", "--json")
    assert sorted(k["accessKeyId"] for k in json.loads(listed.out)) == sorted(keys)
    assert len([p for p in pages if p[0] == "list_access_keys"]) == 2  # 2 + 1
    one = cli("listAccessKeys", "--limit", "1", "--json")
    assert len(json.loads(one.out)) == 1
    users = cli("getUsers", "--json")
    assert "admin" in [u["name"] for u in json.loads(users.out)]
