"""SLA@SOI image copy through the real HTTP app: a ``copy`` disk gets the VM's own persistent copy
of its template when the instance is activated (PreparingDisk), made with real files.

The app has no node manager (``NoNodeManagers``), so after the copy the start itself fails and
the instance is Held: enough to see the copy made, the disk renamed, and failures cleaned up.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tashi.domain.ids import HostId
from tests.api.conftest import Api
from tests.images.samples import sample_images


def images_dir(api: Api) -> Path:
    return api.settings.vfs.prefix / "images"


def setup(api: Api, disks: list[dict[str, Any]]) -> tuple[dict[str, str], int]:
    """Sample images, an up host ``h1``, an agent, and an instance ``vm`` with ``disks``."""
    sample_images(images_dir(api), {".kernel": b"kernel"})
    agent = api.user("sched", role="agent")
    api.call("POST", "/v1/hosts", api.admin, json={"name": "h1"})
    api.http.portal.call(  # type: ignore[union-attr]
        api.service.db.write, lambda tx: tx.hosts.update(HostId(1), up=True, memory=4096, cores=4)
    )
    reply = api.call("POST", "/v1/instances", api.admin, json={"name": "vm", "disks": disks})
    assert reply.status_code == 201, reply.text
    return agent, reply.json()["id"]


def activate(api: Api, agent: dict[str, str]) -> Any:
    return api.call("POST", "/v1/instances/vm/activate", agent, json={"host": "h1"})


def instance(api: Api) -> Any:
    return api.call("GET", "/v1/instances/vm", api.admin).json()


def history(api: Api) -> list[str]:
    events = api.call("GET", "/v1/instances/vm/history", api.admin).json()
    return [f"{e['kind']}: {e['message']}" for e in events]


def entries(api: Api) -> set[str]:
    """The store's entries, dot files (part files) included; image lock files aside."""
    return {n for n in os.listdir(images_dir(api)) if not n.endswith(".vmlock")}


def test_activating_makes_the_vms_own_copy_of_the_template(api: Api) -> None:
    agent, iid = setup(api, [{"uri": "disk.qcow2", "copy": True}, {"uri": "disk.raw"}])
    assert instance(api)["disks"][0] == {"uri": "disk.qcow2", "persistent": True, "copy": True}
    before = entries(api)

    reply = activate(api, agent)

    assert reply.status_code == 503, reply.text  # the copy is made; then no node can start it
    copy = f"vm-{iid}-disk0.qcow2"
    assert entries(api) == before | {copy, f"{copy}.kernel"}  # no part file left either
    template = (images_dir(api) / "disk.qcow2").read_bytes()
    assert (images_dir(api) / copy).read_bytes() == template
    assert os.stat(images_dir(api) / copy).st_ino != os.stat(images_dir(api) / "disk.qcow2").st_ino
    vm = instance(api)
    assert vm["disks"] == [
        {"uri": copy, "persistent": True, "copy": False},
        {"uri": "disk.raw", "persistent": False, "copy": False},
    ]
    assert (vm["state"], vm["hostId"]) == ("Held", None)
    assert "no node manager" in vm["reason"]
    assert f"diskCopy: copied disk.qcow2 to {copy}" in history(api)
    tasks = api.call("GET", "/v1/imageTasks", api.admin).json()
    assert [(t["op"], t["src"], t["dst"], t["state"]) for t in tasks] == [
        ("copy", "disk.qcow2", copy, "done")
    ]

    assert activate(api, agent).status_code == 503  # from Held again: nothing left to copy
    assert entries(api) == before | {copy, f"{copy}.kernel"}
    assert instance(api)["disks"][0]["uri"] == copy


def test_a_missing_template_holds_the_instance_with_the_reason(api: Api) -> None:
    agent, _ = setup(api, [{"uri": "disk.qcow2", "copy": True}])
    (images_dir(api) / "disk.qcow2").unlink()  # gone after createVm
    before = entries(api)

    reply = activate(api, agent)

    assert reply.status_code == 404, reply.text
    vm = instance(api)
    assert (vm["state"], vm["hostId"]) == ("Held", None)
    assert vm["reason"].startswith("copying its disk failed: there is no image 'disk.qcow2'")
    assert vm["disks"] == [{"uri": "disk.qcow2", "persistent": True, "copy": True}]
    assert entries(api) == before
    assert any(line.startswith("diskCopy: copying its disk failed") for line in history(api))


def test_a_later_failing_copy_removes_the_copies_already_made(api: Api) -> None:
    disks = [{"uri": "disk.qcow2", "copy": True}, {"uri": "disk.raw", "copy": True}]
    agent, iid = setup(api, disks)
    taken = images_dir(api) / f"vm-{iid}-disk1.raw"
    taken.write_bytes(b"someone else's")  # the second copy's name: never overwritten
    before = entries(api)

    reply = activate(api, agent)

    assert reply.status_code == 409, reply.text
    assert "already an image" in reply.json()["error"]["message"]
    assert entries(api) == before  # the first copy, made, was removed again
    assert taken.read_bytes() == b"someone else's"
    vm = instance(api)
    assert (vm["state"], vm["hostId"]) == ("Held", None)
    assert "copying its disk failed" in vm["reason"]
    assert all(d["copy"] for d in vm["disks"])


def test_copy_disks_are_not_shared_persistent_disks(api: Api) -> None:
    sample_images(images_dir(api), {})
    body = {"basename": "w", "count": 2, "disks": [{"uri": "disk.qcow2", "copy": True}]}
    reply = api.call("POST", "/v1/instances:createMany", api.admin, json=body)
    assert reply.status_code == 201, reply.text  # each VM will get its own copy
    body["disks"] = [{"uri": "disk.qcow2", "persistent": True}]
    body["basename"] = "p"
    reply = api.call("POST", "/v1/instances:createMany", api.admin, json=body)
    assert reply.status_code == 400
    # A template is only read by its copy disks: copyImage of it is not refused.
    job = {"op": "copy", "src": "disk.qcow2", "dst": "other.qcow2"}
    assert api.call("POST", "/v1/images", api.admin, json=job).status_code == 202
