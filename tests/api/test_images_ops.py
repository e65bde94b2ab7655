"""copyImage, cloneImage, rebaseImage and removeImage through the real HTTP app and qemu-img.

``POST /v1/images`` answers 202 with a task; the tests poll ``GET /v1/imageTasks/{id}`` as the
client does. Refusals are answered at once and leave the store as it was (every entry, dot files
included). A stand-in qemu-img that waits for a flag file shows that ``getImages`` does not list
an image before it is complete.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from tashi.api.schemas import ImageOut, ImageTaskOut
from tashi.images.operations import ImageOps
from tests.api.conftest import Api
from tests.images.samples import MB, sample_images, stand_in


def images_dir(api: Api) -> Path:
    return api.settings.vfs.prefix / "images"


@pytest.fixture
def real(api: Api) -> Api:
    """The store with a real 1 MB raw image and a qcow2 made from it (with a kernel sidecar)."""
    sample_images(images_dir(api), {".kernel": b"kernel"})
    return api


def listing(api: Api) -> dict[str, tuple[int, int]]:
    return {
        e.name: (e.stat(follow_symlinks=False).st_size, e.stat(follow_symlinks=False).st_mtime_ns)
        for e in os.scandir(images_dir(api))
    }


def names(api: Api, who: dict[str, str]) -> list[str]:
    return [i["imageName"] for i in api.call("GET", "/v1/images", who).json()]


def start(api: Api, who: dict[str, str], op: str, src: str, dst: str) -> Any:
    return api.call("POST", "/v1/images", who, json={"op": op, "src": src, "dst": dst})


def wait(api: Api, who: dict[str, str], task_id: int, timeout: float = 30.0) -> ImageTaskOut:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = api.call("GET", f"/v1/imageTasks/{task_id}", who)
        assert reply.status_code == 200, reply.text
        task = ImageTaskOut.model_validate(reply.json())
        if task.state in ("done", "failed"):
            return task
        time.sleep(0.02)
    raise AssertionError(f"image task {task_id} did not end within {timeout} s")


def made(api: Api, who: dict[str, str], op: str, src: str, dst: str) -> ImageTaskOut:
    reply = start(api, who, op, src, dst)
    assert reply.status_code == 202, reply.text
    task = ImageTaskOut.model_validate(reply.json())
    assert (task.op, task.src, task.dst, task.state) == (op, src, dst, task.state)
    assert task.state in ("queued", "running")
    return wait(api, who, task.id)


def test_a_user_copies_clones_and_rebases(real: Api) -> None:
    api = real
    alice = api.user("alice")
    copied = made(api, alice, "copy", "disk.raw", "mine.raw")
    assert copied.state == "done" and copied.error is None and copied.user == "alice"
    assert copied.image is not None and copied.image.imageName == "mine.raw"
    assert copied.image.imageSize == MB
    assert (images_dir(api) / "mine.raw").read_bytes() == (
        images_dir(api) / "disk.raw"
    ).read_bytes()
    cloned = made(api, alice, "clone", "disk.qcow2", "clone.qcow2")
    assert cloned.state == "done"
    assert (images_dir(api) / "clone.qcow2.kernel").read_bytes() == b"kernel"
    flat = made(api, alice, "rebase", "clone.qcow2", "flat.qcow2")
    assert flat.state == "done" and flat.image is not None and flat.image.format == "qcow2"
    listed = [ImageOut.model_validate(i) for i in api.call("GET", "/v1/images", alice).json()]
    by_name = {i.imageName: i for i in listed}
    assert {"mine.raw", "clone.qcow2", "flat.qcow2"} <= set(by_name)
    assert by_name["flat.qcow2"].id == flat.image.id


@pytest.mark.parametrize(
    ("src", "dst", "status", "code"),
    [
        ("../x", "new.img", 400, "invalid_input"),
        ("/etc/passwd", "new.img", 400, "invalid_input"),
        ("a/b", "new.img", 400, "invalid_input"),
        ("disk.raw", "../x", 400, "invalid_input"),
        ("disk.raw", "/etc/passwd", 400, "invalid_input"),
        ("disk.raw", "a/b", 400, "invalid_input"),
        ("disk.raw", "disk.qcow2", 409, "already_exists"),
        ("missing.img", "new.img", 404, "not_found"),
        ("link-out", "new.img", 400, "invalid_input"),
    ],
)
def test_refusals_are_immediate_and_change_nothing(
    real: Api, tmp_path: Path, src: str, dst: str, status: int, code: str
) -> None:
    api = real
    (images_dir(api) / "link-out").symlink_to("/etc/passwd")
    alice = api.user("alice")
    before = listing(api)
    for op in ("copy", "clone", "rebase"):
        reply = start(api, alice, op, src, dst)
        assert (reply.status_code, reply.json()["error"]["code"]) == (status, code), reply.text
        assert "\n" not in reply.json()["error"]["message"]
    assert listing(api) == before
    assert api.call("GET", "/v1/imageTasks", alice).json() == []


def test_bad_requests(real: Api) -> None:
    api = real
    alice = api.user("alice")
    body = {"op": "move", "src": "disk.raw", "dst": "x.raw"}
    assert api.call("POST", "/v1/images", alice, json=body).status_code == 400
    assert api.call("POST", "/v1/images", {}, json={**body, "op": "copy"}).status_code == 401
    agent = api.user("sched", role="agent")
    reply = start(api, agent, "copy", "disk.raw", "x.raw")
    assert reply.status_code == 403


def test_an_image_is_listed_only_when_complete(real: Api, tmp_path: Path) -> None:
    api = real
    flag = tmp_path / "go"
    body = f'echo partial > "$last"; while [ ! -e {flag} ]; do sleep 0.02; done'
    script = stand_in(tmp_path, "convert", body)
    service = api.service.images
    service.ops = ImageOps(service.store, service.ops._executor, qemu_img=script)
    alice = api.user("alice")
    reply = start(api, alice, "rebase", "disk.qcow2", "flat.qcow2")
    assert reply.status_code == 202
    task_id = reply.json()["id"]
    part = images_dir(api) / ".flat.qcow2.tashi-part"
    deadline = time.monotonic() + 10
    while not part.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert part.exists()
    assert "flat.qcow2" not in names(api, alice)
    assert api.call("GET", f"/v1/imageTasks/{task_id}", alice).json()["state"] == "running"
    again = start(api, alice, "copy", "disk.raw", "flat.qcow2")
    assert again.status_code == 409 and "being made" in again.json()["error"]["message"]
    removing = api.call("DELETE", "/v1/images/disk.qcow2", api.admin)
    assert removing.status_code == 409 and "being read" in removing.json()["error"]["message"]
    flag.touch()
    assert wait(api, alice, task_id).state == "done"
    assert "flat.qcow2" in names(api, alice)
    assert not part.exists()


def test_a_failed_task_says_a_program_failed_logs_qemu_img_and_leaves_no_image(
    real: Api, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    api = real
    script = stand_in(tmp_path, "create", 'echo "qemu-img: no space left" >&2; exit 1')
    service = api.service.images
    service.ops = ImageOps(service.store, service.ops._executor, qemu_img=script)
    alice = api.user("alice")
    reply = start(api, alice, "clone", "disk.qcow2", "clone.qcow2")
    task = wait(api, alice, reply.json()["id"])
    assert task.state == "failed" and task.error is not None
    assert task.error.code == "backend_failure"
    assert task.error.message == "a program the server runs failed"  # qemu-img's words: the log's
    logged = [r.getMessage() for r in caplog.records if f"image task {task.id} " in r.getMessage()]
    assert any("no space left" in line for line in logged), logged
    assert not any(n.startswith(("clone", ".clone")) for n in os.listdir(images_dir(api)))


def test_tasks_belong_to_their_user(real: Api) -> None:
    api = real
    alice, bob = api.user("alice"), api.user("bob")
    task = made(api, alice, "copy", "disk.raw", "a.raw")
    assert api.call("GET", f"/v1/imageTasks/{task.id}", bob).status_code == 404
    assert api.call("GET", "/v1/imageTasks", bob).json() == []
    assert [t["id"] for t in api.call("GET", "/v1/imageTasks", alice).json()] == [task.id]
    assert [t["id"] for t in api.call("GET", "/v1/imageTasks", api.admin).json()] == [task.id]
    assert api.call("GET", "/v1/imageTasks/999", alice).status_code == 404


def test_remove_image_is_for_admins_and_takes_the_sidecars(real: Api) -> None:
    api = real
    alice = api.user("alice")
    made(api, alice, "copy", "disk.qcow2", "mine.qcow2")
    assert (images_dir(api) / "mine.qcow2.kernel").exists()
    refused = api.call("DELETE", "/v1/images/mine.qcow2", alice)
    assert refused.status_code == 403
    removed = api.call("DELETE", "/v1/images/mine.qcow2", api.admin)
    assert removed.status_code == 200, removed.text
    assert ImageOut.model_validate(removed.json()).imageName == "mine.qcow2"
    assert "mine.qcow2" not in names(api, alice)
    assert not (images_dir(api) / "mine.qcow2.kernel").exists()
    assert api.call("DELETE", "/v1/images/mine.qcow2", api.admin).status_code == 404


def test_remove_refuses_an_image_an_instance_uses_or_an_image_backs(real: Api) -> None:
    api = real
    alice = api.user("alice")
    disks = [{"uri": "disk.raw", "persistent": True}]
    reply = api.call("POST", "/v1/instances", alice, json={"name": "web", "disks": disks})
    assert reply.status_code == 201, reply.text
    made(api, alice, "clone", "disk.qcow2", "clone.qcow2")
    before = listing(api)
    used = api.call("DELETE", "/v1/images/disk.raw", api.admin)
    assert used.status_code == 409 and "instance web" in used.json()["error"]["message"]
    backs = api.call("DELETE", "/v1/images/disk.qcow2", api.admin)
    assert backs.status_code == 409 and "backing file of clone.qcow2" in backs.text
    copy = start(api, alice, "copy", "disk.raw", "snapshot.raw")
    assert copy.status_code == 409 and "persistent disk of instance web" in copy.text
    for name in ("../disk.raw", "%2Fetc%2Fpasswd"):
        assert api.call("DELETE", f"/v1/images/{name}", api.admin).status_code in (400, 404)
    assert listing(api) == before
    assert api.call("DELETE", f"/v1/instances/{reply.json()['id']}", alice).status_code == 200
    assert api.call("DELETE", "/v1/images/disk.raw", api.admin).status_code == 200
