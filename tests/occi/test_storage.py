"""OCCI ``storage`` on Tashi's volumes and ``storagelink`` on attaching them, in-process (the
app over a real cluster-manager service, the in-memory store, real volume files): create,
read, list, update, actions, delete in each rendering; a storagelink made on its own or with a
new compute waits until the compute runs or is stopped, is attached then, and detached by its
DELETE. (Hot-plugging into a running VM is the live test's: tests/occi/test_live_pocci.py.)"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from tashi.clustermanager.events import InstanceStateChanged
from tashi.domain.ids import InstanceId
from tashi.domain.states import InstanceState
from tashi.frontends.occi.storages import SYSTEM
from tests.occi.conftest import COMPUTE_KIND, INFRA, Occi
from tests.occi.test_renderings import validate

JSON = "application/occi+json"
OS = 'Category: base.qcow2; scheme="http://schemas.tashi.apache.org/occi/os_tpl#"; class="mixin"'
STORAGE_KIND = f'storage; scheme="{INFRA}"; class="kind"'
LINK_KIND = f'storagelink; scheme="{INFRA}"; class="kind"'
ACTION = "http://schemas.ogf.org/occi/infrastructure/storage/action#"


def settle(occi: Occi) -> None:
    """Wait for the background work: volume files made, pending links attached."""
    occi.http.portal.call(occi.api.service.volumes.wait)  # type: ignore[union-attr]
    occi.http.portal.call(occi.ctx.work.wait)  # type: ignore[union-attr]


def new_storage(occi: Occi, who: str = "alice", media: str = "text/plain", **attrs: Any) -> str:
    attrs = {"occi.storage.size": 0.1, **attrs}
    if media == JSON:
        doc = {"kind": f"{INFRA}storage", "attributes": attrs}
        reply = occi.call(
            "POST", "/storage/", who, content=json.dumps(doc), headers={"Content-Type": JSON}
        )
    else:
        lines = [("Category", STORAGE_KIND)] + [
            ("X-OCCI-Attribute", f"{k}={json.dumps(v)}") for k, v in attrs.items()
        ]
        if media == "text/occi":
            headers = {"Content-Type": media}
            for name, val in lines:
                headers[name] = f"{headers[name]}, {val}" if name in headers else val
            reply = occi.call("POST", "/storage/", who, headers=headers)
        else:
            body = "".join(f"{k}: {v}\n" for k, v in lines)
            reply = occi.call(
                "POST", "/storage/", who, content=body, headers={"Content-Type": media}
            )
    assert reply.status_code == 201, reply.text
    location = str(reply.headers["location"])
    settle(occi)
    return location


def read(occi: Occi, url: str, who: str = "alice") -> dict[str, Any]:
    reply = occi.call("GET", url, who, headers={"Accept": JSON})
    assert reply.status_code == 200, reply.text
    doc: dict[str, Any] = reply.json()
    return doc


def move(occi: Occi, iid: str, to: InstanceState) -> None:
    """The instance's record moved (as the scheduler and a node would), and the event
    published on the cluster manager's hub, as its services publish it."""
    service = occi.api.service

    async def run() -> None:
        def change(tx: Any) -> Any:
            inst = tx.instances.get(InstanceId(int(iid)))
            return inst, tx.instances.transition(inst.id, inst.state, to, now=datetime.now(UTC))

        before, after = await service.db.write(change)
        await service.events.publish(
            InstanceStateChanged(after.id, before.state, after.state, after)
        )

    occi.http.portal.call(run)  # type: ignore[union-attr]
    settle(occi)


def test_a_storage_is_made_read_listed_and_deleted_in_each_rendering(occi: Occi) -> None:
    for media in ("text/plain", "text/occi", JSON):
        location = new_storage(occi, media=media, **{"occi.core.title": f"disk {media}"})
        vid = location.rsplit("/", 1)[1]
        assert location.startswith("http://occi.test/storage/vol-")
        doc = read(occi, location)
        assert doc["kind"] == f"{INFRA}storage" and doc["id"] == vid
        assert doc["attributes"]["occi.storage.size"] == 1  # 0.1 GiB, rounded up
        assert doc["attributes"]["occi.core.title"] == f"disk {media}"
        assert doc["attributes"]["occi.storage.state"] == "online"
        listed = occi.call("GET", "/storage/", headers={"Accept": "text/uri-list"})
        assert location in listed.text
        # the EC2 view of the same volume: its Name tag is the title
        (volume,) = [
            v
            for v in occi.http.portal.call(  # type: ignore[union-attr]
                occi.api.service.volumes.describe, SYSTEM
            )
            if v.volume.id == vid
        ]
        assert volume.volume.size == 1 and volume.tags["Name"] == f"disk {media}"
        assert occi.call("GET", location, "bob").status_code == 404
        assert occi.call("DELETE", location).status_code == 200
        assert occi.call("GET", location).status_code == 404


def test_a_storage_needs_a_size_and_keeps_its_size(occi: Occi) -> None:
    body = f'Category: {STORAGE_KIND}\nX-OCCI-Attribute: occi.core.title="x"\n'
    reply = occi.call("POST", "/storage/", content=body, headers={"Content-Type": "text/plain"})
    assert reply.status_code == 400 and "occi.storage.size" in reply.text
    location = new_storage(occi)
    update = occi.call(
        "POST",
        location,
        content='X-OCCI-Attribute: occi.core.title="renamed"\n',
        headers={"Content-Type": "text/plain"},
    )
    assert update.status_code == 200, update.text
    assert read(occi, location)["attributes"]["occi.core.title"] == "renamed"
    grow = occi.call(
        "PUT",
        location,
        content="X-OCCI-Attribute: occi.storage.size=5\n",
        headers={"Content-Type": "text/plain"},
    )
    assert grow.status_code == 409


def test_storage_actions_map_onto_snapshots_or_are_refused(occi: Occi) -> None:
    location = new_storage(occi)
    vid = location.rsplit("/", 1)[1]
    for term in ("snapshot", "backup"):
        reply = occi.call(
            "POST",
            f"{location}?action={term}",
            content=f'Category: {term}; scheme="{ACTION}"; class="action"\n',
            headers={"Content-Type": "text/plain"},
        )
        assert reply.status_code == 200, reply.text
    snaps = occi.http.portal.call(  # type: ignore[union-attr]
        occi.api.service.volumes.snapshots, SYSTEM
    )
    assert sum(s.snapshot.volume_id == vid for s in snaps) == 2
    online = occi.call(
        "POST",
        f"{location}?action=online",
        content=json.dumps({"action": f"{ACTION}online"}),
        headers={"Content-Type": JSON},
    )
    assert online.status_code == 200
    for term in ("offline", "resize"):
        refused = occi.call(
            "POST",
            f"{location}?action={term}",
            headers={"Content-Type": "text/occi", "Category": f'{term}; scheme="{ACTION}"'},
        )
        assert refused.status_code == 501, refused.text
    settle(occi)


def test_a_storagelink_waits_for_its_compute_then_attaches_and_detaches(occi: Occi) -> None:
    storage = new_storage(occi)
    vid = storage.rsplit("/", 1)[1]
    compute = occi.create("alice", OS)
    iid = compute.rsplit("/", 1)[1]
    body = "\n".join(
        [
            f"Category: {LINK_KIND}",
            f'X-OCCI-Attribute: occi.core.source="{compute}"',
            f'X-OCCI-Attribute: occi.core.target="/storage/{vid}"',
            'X-OCCI-Attribute: occi.storagelink.mountpoint="/data"',
        ]
    )
    made = occi.call(
        "POST", "/link/storagelink/", content=body, headers={"Content-Type": "text/plain"}
    )
    assert made.status_code == 201, made.text
    link = str(made.headers["location"])
    assert link.endswith(f"/link/storagelink/{iid}-{vid}")
    doc = read(occi, link)
    assert doc["attributes"]["occi.storagelink.state"] == "inactive"  # Pending: it waits
    assert doc["attributes"]["occi.storagelink.deviceid"] == "/dev/vdb"
    assert doc["attributes"]["occi.storagelink.mountpoint"] == "/data"
    assert doc["source"]["location"].endswith(compute.removeprefix("http://occi.test"))
    assert read(occi, storage)["attributes"]["occi.storage.state.message"] == "available"

    move(occi, iid, InstanceState.Stopped)  # no VM: the record alone takes the volume
    state = read(occi, storage)["attributes"]["occi.storage.state.message"]
    assert state == f"attached (compute {iid})"
    links = read(occi, compute)["links"]
    assert [x["id"] for x in links if x["kind"] == f"{INFRA}storagelink"] == [
        f"{iid}-0",
        f"{iid}-{vid}",
    ]
    assert occi.call("DELETE", storage).status_code == 409  # attached
    assert occi.call("DELETE", link).status_code == 200  # detached
    assert read(occi, storage)["attributes"]["occi.storage.state.message"] == "available"
    assert occi.call("GET", link).status_code == 404
    assert occi.call("DELETE", storage).status_code == 200


def test_a_compute_created_with_a_storagelink_attaches_it_once_it_runs(occi: Occi) -> None:
    storage = new_storage(occi, media=JSON)
    vid = storage.rsplit("/", 1)[1]
    path = storage.removeprefix("http://occi.test")
    body = "\n".join(
        [
            f"Category: {COMPUTE_KIND}",
            OS,
            f'Link: <{path}>; rel="{INFRA}storage"; category="{INFRA}storagelink"',
            f'Link: </network/1>; rel="{INFRA}network"; category="{INFRA}networkinterface"',
        ]
    )
    reply = occi.call("POST", "/compute/", content=body, headers={"Content-Type": "text/plain"})
    assert reply.status_code == 201, reply.text
    compute = str(reply.headers["location"])
    iid = compute.rsplit("/", 1)[1]
    link = f"/link/storagelink/{iid}-{vid}"
    assert read(occi, link)["attributes"]["occi.storagelink.state"] == "inactive"
    # bob's compute cannot take alice's storage
    refused = occi.call(
        "POST", "/compute/", "bob", content=body, headers={"Content-Type": "text/plain"}
    )
    assert refused.status_code == 404
    move(occi, iid, InstanceState.Stopped)
    doc = read(occi, link)
    assert doc["attributes"]["occi.storagelink.deviceid"] == "/dev/vdb"
    assert doc["attributes"]["occi.storagelink.state.message"] == "attached at /dev/vdb"
    assert read(occi, storage)["attributes"]["occi.storage.state.message"].startswith("attached")


def test_a_pending_link_whose_storage_was_taken_shows_why(occi: Occi) -> None:
    storage = new_storage(occi)
    vid = storage.rsplit("/", 1)[1]
    first = occi.create("alice", OS, f'Link: <{storage}>; category="{INFRA}storagelink"')
    second = occi.create("alice", OS)
    body = "\n".join(
        [
            f"Category: {LINK_KIND}",
            f'X-OCCI-Attribute: occi.core.source="{second}"',
            f'X-OCCI-Attribute: occi.core.target="{storage}"',
        ]
    )
    made = occi.call(
        "POST", "/link/storagelink/", content=body, headers={"Content-Type": "text/plain"}
    )
    assert made.status_code == 201, made.text
    move(occi, second.rsplit("/", 1)[1], InstanceState.Stopped)  # second takes it first
    move(occi, first.rsplit("/", 1)[1], InstanceState.Stopped)
    fid = first.rsplit("/", 1)[1]
    doc = read(occi, f"/link/storagelink/{fid}-{vid}")
    assert doc["attributes"]["occi.storagelink.state"] == "error"
    assert "already attached" in doc["attributes"]["occi.storagelink.state.message"]
    assert occi.call("DELETE", f"/link/storagelink/{fid}-{vid}").status_code == 200
    assert occi.call("GET", f"/link/storagelink/{fid}-{vid}").status_code == 404


def test_storage_and_its_links_are_valid_gfd226_json(occi: Occi) -> None:
    storage = new_storage(occi, **{"occi.core.summary": "scratch"})
    validate(read(occi, storage), "resource")
    compute = occi.create("alice", OS, f'Link: <{storage}>; category="{INFRA}storagelink"')
    iid, vid = compute.rsplit("/", 1)[1], storage.rsplit("/", 1)[1]
    validate(read(occi, f"/link/storagelink/{iid}-{vid}"), "link")
    validate(read(occi, compute), "resource")
    listed = occi.call("GET", "/storage/", headers={"Accept": JSON}).json()
    validate(listed, "resource_collection")
    links = occi.call("GET", "/link/storagelink/", headers={"Accept": JSON}).json()
    validate(links, "link_collection")
    model = occi.call("GET", "/-/", headers={"Accept": JSON}).json()
    validate(model, "model")
