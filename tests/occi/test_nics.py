"""Networkinterface links made and deleted on their own (``frontends/occi/nics.py``): a NIC
added to an existing compute (hot-plugged by its node when it runs: the node gateway is
scripted here) and removed again; the link reads as those a compute was created with; a
compute that cannot take a NIC now (suspended, migrating) takes it when it runs, or shows why
it could not; bad input answers 400, 404 or 409 and changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tashi.domain.errors import BackendFailure
from tashi.domain.ids import InstanceId, UserId
from tashi.domain.models import Host, Instance, NicConfig, Principal, Role
from tashi.domain.states import InstanceState
from tashi.storage.contract import InstanceChanges
from tests.occi.conftest import INFRA, Occi
from tests.occi.test_storage import JSON, OS, move, read

KIND = f'networkinterface; scheme="{INFRA}"; class="kind"'


def link_body(source: str, target: str, *extra: str) -> str:
    return "\n".join(
        [
            f"Category: {KIND}",
            f'X-OCCI-Attribute: occi.core.source="{source}"',
            f'X-OCCI-Attribute: occi.core.target="{target}"',
            *extra,
        ]
    )


def post(occi: Occi, body: str, who: str = "alice") -> Any:
    headers = {"Content-Type": "text/plain"}
    return occi.call("POST", "/link/networkinterface/", who, content=body, headers=headers)


class Nodes:
    """The node managers' answers to the NIC calls (the gateway's two methods replaced)."""

    def __init__(self, occi: Occi) -> None:
        self.calls: list[tuple[str, int, str]] = []
        self.refuse: BackendFailure | None = None
        nodes: Any = occi.api.service.nodes
        nodes.attach_nic = self.attach_nic
        nodes.detach_nic = self.detach_nic

    async def attach_nic(self, host: Host, inst: Instance, nic: NicConfig) -> None:
        self.calls.append(("attach", inst.id, nic.mac))
        if self.refuse is not None:
            raise self.refuse

    async def detach_nic(self, host: Host, inst: Instance, mac: str, timeout: float) -> None:
        self.calls.append(("detach", inst.id, mac))


def running(occi: Occi, iid: str) -> None:
    """The compute placed on a host and Running (as the scheduler and its node would)."""

    async def run() -> None:
        def change(tx: Any) -> None:
            now = datetime.now(UTC)
            host = tx.hosts.add("h1", memory=4096, cores=4, version="x", now=now)
            inst = tx.instances.get(InstanceId(int(iid)))
            changes = InstanceChanges(host_id=host.id)
            tx.instances.transition(
                inst.id, inst.state, InstanceState.Running, now=now, changes=changes
            )

        await occi.api.service.db.write(change)

    occi.http.portal.call(run)  # type: ignore[union-attr]


def allocate(occi: Occi, iid: str, index: int, address_range: str) -> str | None:
    """NIC ``index``'s address, as the scheduler's DhcpDns hook has the cluster manager
    allocate it (POST /v1/instances/{ref}/nics/{index}/address, as the agent account)."""

    async def run() -> str | None:
        agent = Principal(UserId(0), "scheduler", Role.agent)
        service = occi.api.service.addresses
        inst, _ = await service.allocate(agent, iid, index, address_range)
        return inst.nics[index].ip

    return occi.http.portal.call(run)  # type: ignore[union-attr]


def test_a_networkinterface_hot_plugs_a_nic_into_a_running_compute(occi: Occi) -> None:
    nodes = Nodes(occi)
    compute = occi.create("alice", OS)
    iid = compute.rsplit("/", 1)[1]
    running(occi, iid)
    made = post(occi, link_body(compute, "/network/1", 'X-OCCI-Attribute: occi.core.id="x_1"'))
    assert made.status_code == 201, made.text
    link = str(made.headers["location"])
    assert link == f"http://occi.test/link/networkinterface/{iid}-1"
    doc = read(occi, link)
    mac = doc["attributes"]["occi.networkinterface.mac"]
    assert nodes.calls == [("attach", int(iid), mac)]
    assert doc["attributes"]["occi.networkinterface.interface"] == "eth1"
    assert doc["attributes"]["occi.networkinterface.state"] == "active"
    assert doc["target"]["location"] == "/network/1"
    links = [
        x["id"] for x in read(occi, compute)["links"] if x["kind"].endswith("#networkinterface")
    ]
    assert links == [f"{iid}-0", f"{iid}-1"]
    assert "occi.networkinterface.address" not in doc["attributes"]
    # The scheduler's DhcpDns hook gives the hot-plugged NIC its address (nics_changed):
    # the ipnetworkinterface mixin shows it.
    assert allocate(occi, iid, 1, "198.19.9.10-198.19.9.20") == "198.19.9.10"
    after = read(occi, link)["attributes"]
    assert after["occi.networkinterface.address"] == "198.19.9.10"

    assert occi.call("DELETE", f"/link/networkinterface/{iid}-0").status_code == 409  # not last
    assert occi.call("DELETE", link, "bob").status_code == 403
    assert occi.call("DELETE", link).status_code == 200
    assert nodes.calls[-1] == ("detach", int(iid), mac)
    assert occi.call("GET", link).status_code == 404
    assert occi.call("DELETE", link).status_code == 404


def test_a_refused_hot_plug_leaves_the_compute_as_it_was(occi: Occi) -> None:
    nodes = Nodes(occi)
    compute = occi.create("alice", OS)
    iid = compute.rsplit("/", 1)[1]
    running(occi, iid)
    nodes.refuse = BackendFailure("qemu refused the device")
    refused = post(occi, link_body(compute, "/network/1"))
    assert refused.status_code == 502, refused.text
    assert occi.call("GET", f"/link/networkinterface/{iid}-1").status_code == 404


def test_a_pending_compute_takes_the_nic_with_its_record(occi: Occi) -> None:
    nodes = Nodes(occi)
    compute = occi.create("alice", OS)
    iid = compute.rsplit("/", 1)[1]
    mac = "52:54:00:12:34:56"
    made = post(
        occi,
        link_body(
            compute,
            "http://occi.test/network/1",
            f'X-OCCI-Attribute: occi.networkinterface.mac="{mac}"',
        ),
    )
    assert made.status_code == 201, made.text
    doc = read(occi, str(made.headers["location"]))
    assert doc["attributes"]["occi.networkinterface.mac"] == mac
    assert doc["attributes"]["occi.networkinterface.state"] == "inactive"
    assert nodes.calls == []  # no VM yet: it starts with both NICs
    listed = occi.call("GET", "/link/networkinterface/", headers={"Accept": JSON}).json()
    assert [x["id"] for x in listed["links"]] == [f"{iid}-0", f"{iid}-1"]


def test_bad_networkinterfaces_are_refused(occi: Occi) -> None:
    Nodes(occi)
    compute = occi.create("alice", OS)
    iid = compute.rsplit("/", 1)[1]
    assert post(occi, link_body(compute, "/network/9")).status_code == 404
    assert post(occi, link_body("/compute/999", "/network/1")).status_code == 404
    assert post(occi, link_body(compute, "/storage/1")).status_code == 400
    assert post(occi, link_body(compute, "/network/1"), "bob").status_code == 403
    bad_mac = 'X-OCCI-Attribute: occi.networkinterface.mac="nope"'
    assert post(occi, link_body(compute, "/network/1", bad_mac)).status_code == 400
    other_kind = link_body(compute, "/network/1").replace("networkinterface;", "storagelink;")
    assert post(occi, other_kind).status_code == 400
    moved_to(occi, iid, InstanceState.MigratePrep)
    assert occi.call("DELETE", f"/link/networkinterface/{iid}-0").status_code == 409
    assert [x["id"] for x in read(occi, compute)["links"]] == [f"{iid}-0", f"{iid}-0"]


def test_a_compute_that_cannot_take_a_nic_now_takes_it_when_it_runs(occi: Occi) -> None:
    nodes = Nodes(occi)
    compute = occi.create("alice", OS)
    iid = compute.rsplit("/", 1)[1]
    running(occi, iid)
    moved_to(occi, iid, InstanceState.Suspended)  # a resume restores the VM as it was
    made = post(occi, link_body(compute, "/network/1"))
    assert made.status_code == 201, made.text
    link = str(made.headers["location"])
    assert link.endswith(f"/link/networkinterface/{iid}-1")
    waiting = read(occi, link)["attributes"]
    assert waiting["occi.networkinterface.state"] == "inactive"
    assert "once compute" in waiting["occi.networkinterface.state.message"]
    other = post(occi, link_body(compute, "/network/1"))
    assert str(other.headers["location"]).endswith(f"/link/networkinterface/{iid}-2")
    assert occi.call("DELETE", str(other.headers["location"])).status_code == 200  # forgotten
    assert nodes.calls == []

    move(occi, iid, InstanceState.Running)  # resumed: the NIC is hot-plugged
    doc = read(occi, link)["attributes"]
    assert doc["occi.networkinterface.state"] == "active"
    assert doc["occi.networkinterface.mac"] == waiting["occi.networkinterface.mac"]
    assert nodes.calls == [("attach", int(iid), waiting["occi.networkinterface.mac"])]
    assert occi.call("GET", f"/link/networkinterface/{iid}-2").status_code == 404


def test_a_waiting_nic_that_cannot_be_added_shows_why(occi: Occi) -> None:
    nodes = Nodes(occi)
    compute = occi.create("alice", OS)
    iid = compute.rsplit("/", 1)[1]
    running(occi, iid)
    moved_to(occi, iid, InstanceState.MigratePrep)
    link = str(post(occi, link_body(compute, "/network/1")).headers["location"])
    nodes.refuse = BackendFailure("qemu refused the device")
    move(occi, iid, InstanceState.Running)
    doc = read(occi, link)["attributes"]
    assert doc["occi.networkinterface.state"] == "error"
    assert "qemu refused the device" in doc["occi.networkinterface.state.message"]
    assert occi.call("DELETE", link).status_code == 200
    assert occi.call("GET", link).status_code == 404


def moved_to(occi: Occi, iid: str, state: InstanceState) -> None:
    async def run() -> None:
        def change(tx: Any) -> None:
            inst = tx.instances.get(InstanceId(int(iid)))
            tx.instances.transition(inst.id, inst.state, state, now=datetime.now(UTC))

        await occi.api.service.db.write(change)

    occi.http.portal.call(run)  # type: ignore[union-attr]
