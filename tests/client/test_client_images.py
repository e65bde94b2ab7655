"""copyImage, cloneImage, rebaseImage, getImageTasks and removeImage: the real ``tashi`` console
script against a real ``tashi-cm`` (the same harness as ``test_client_live.py``, its own
cluster manager), with real images made by qemu-img in the cluster manager's image store.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.client.test_client_live import Cluster
from tests.client.test_client_live import cluster as live_cluster  # noqa: F401  (the fixture)
from tests.images.samples import sample_images


@pytest.fixture(scope="module")
def images(live_cluster: Cluster) -> Path:  # noqa: F811
    store = live_cluster.root / "vfs" / "images"
    sample_images(store, {".kernel": b"kernel"})
    return store


@pytest.fixture(scope="module")
def alice(live_cluster: Cluster) -> Path:  # noqa: F811
    return live_cluster.user_config("alice", "alice-pass-1")


def test_a_user_copies_clones_and_rebases(
    live_cluster: Cluster,  # noqa: F811
    images: Path,
    alice: Path,
) -> None:
    tashi = live_cluster
    done = tashi.ok("copyImage", "--src", "disk.raw", "--dst", "alice.raw", config=alice)
    assert done.out == "Image alice.raw copied from disk.raw (1.00M).\n"
    assert (images / "alice.raw").read_bytes() == (images / "disk.raw").read_bytes()
    cloned = tashi.ok("cloneImage", "--src", "disk.qcow2", "--dst", "lab.qcow2", config=alice)
    assert cloned.out.startswith("Image lab.qcow2 cloned from disk.qcow2 (")
    assert (images / "lab.qcow2.kernel").read_bytes() == b"kernel"
    flat = tashi.ok(
        "rebaseImage", "--src", "lab.qcow2", "--dst", "flat.qcow2", "--json", config=alice
    ).json()
    assert (flat["state"], flat["op"], flat["user"]) == ("done", "rebase", "alice")
    assert flat["image"]["imageName"] == "flat.qcow2" and flat["image"]["format"] == "qcow2"
    listed = {row[1] for row in tashi.ok("getImages", config=alice).rows()}
    assert {"alice.raw", "lab.qcow2", "flat.qcow2"} <= listed
    tasks = tashi.ok("getImageTasks", config=alice).rows()
    assert [row[1:5] for row in tasks] == [
        ["copy", "disk.raw", "alice.raw", "done"],
        ["clone", "disk.qcow2", "lab.qcow2", "done"],
        ["rebase", "lab.qcow2", "flat.qcow2", "done"],
    ]


def test_nowait_returns_at_once_and_the_task_shows_the_end(
    live_cluster: Cluster,  # noqa: F811
    images: Path,
    alice: Path,
) -> None:
    ran = live_cluster.ok(
        "copyImage", "--src", "disk.qcow2", "--dst", "later.qcow2", "--nowait", config=alice
    )
    assert ran.out.startswith("Copying disk.qcow2 to later.qcow2 in the background (task ")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        tasks = live_cluster.ok("getImageTasks", "--json", config=alice).json()
        if [t["state"] for t in tasks if t["dst"] == "later.qcow2"] == ["done"]:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the copy did not end")
    assert (images / "later.qcow2.kernel").exists()


@pytest.mark.parametrize(
    ("argv", "status", "says"),
    [
        (["--src", "../x", "--dst", "y.img"], 2, "--src: '../x' is not an image name"),
        (["--src", "disk.raw", "--dst", "/etc/passwd"], 2, "--dst: '/etc/passwd' is not an image"),
        (["--src", "a/b", "--dst", "y.img"], 2, "is not an image name"),
        (["--src", "disk.raw", "--dst", "disk.qcow2"], 4, "already an image 'disk.qcow2'"),
        (["--src", "nothing.img", "--dst", "y.img"], 3, "there is no image 'nothing.img'"),
    ],
)
def test_refusals_are_one_line_with_their_status(
    live_cluster: Cluster,  # noqa: F811
    images: Path,
    alice: Path,
    argv: list[str],
    status: int,
    says: str,
) -> None:
    before = sorted(os.listdir(images))
    for verb in ("copyImage", "cloneImage", "rebaseImage"):
        ran = live_cluster.tashi(verb, *argv, config=alice)
        assert ran.status == status, ran.err
        assert says in ran.err and ran.err.count("\n") == 1
    assert sorted(os.listdir(images)) == before


def test_remove_image_is_for_admins(
    live_cluster: Cluster,  # noqa: F811
    images: Path,
    alice: Path,
) -> None:
    live_cluster.ok("copyImage", "--src", "disk.qcow2", "--dst", "gone.qcow2", config=alice)
    refused = live_cluster.tashi("removeImage", "--image", "gone.qcow2", config=alice)
    assert refused.status == 8 and "admin" in refused.err
    assert live_cluster.ok("removeImage", "--image", "gone.qcow2").out == (
        "Image gone.qcow2 removed.\n"
    )
    assert not (images / "gone.qcow2").exists() and not (images / "gone.qcow2.kernel").exists()
    assert live_cluster.tashi("removeImage", "--image", "gone.qcow2").status == 3
    live_cluster.ok("cloneImage", "--src", "disk.qcow2", "--dst", "keeps.qcow2", config=alice)
    backs = live_cluster.tashi("removeImage", "--image", "disk.qcow2")
    assert backs.status == 5 and "backing file of" in backs.err and "keeps.qcow2" in backs.err


def test_help_has_examples(live_cluster: Cluster) -> None:  # noqa: F811
    ran = live_cluster.ok("cloneImage", "--help")
    assert "--src IMAGE" in ran.out and "tashi cloneImage --src debian.qcow2" in ran.out
