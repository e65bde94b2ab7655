"""Fixtures of the VMM driver tests: a lab per test, over the fake and the QEMU driver.

``kind`` is module-scoped and parametrized, so pytest runs a module's fake tests together and
its QEMU tests together (a module's shared guest boots once per kind). ``lab`` gives a test its
own directory tree and, when the test ends, fails it if anything a driver made is left: a qemu
process naming the lab (stopped by pid, then reported), a VM cgroup, a socket, a pid or state
file. QEMU tests boot ``var/images/tashi-tiny.qcow2`` (built by the images fixture when missing)
under the accelerator the driver's probe chooses (TCG here).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.images.conftest import tiny_image  # noqa: F401  (registers the session fixture)
from tests.images.guests import require_programs
from tests.vmm.lab import CGROUP_ROOT, Lab


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module", params=["fake", "qemu"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_lab(kind: str, request: pytest.FixtureRequest) -> Lab:
    if kind == "fake":
        return Lab("fake", None)
    require_programs("qemu-system-x86_64", "qemu-img", "gzip")
    return Lab("qemu", request.getfixturevalue("tiny_image"))


def finish_lab(lab: Lab) -> None:
    left = lab.leftovers()
    if left:
        lab.clean_up_after_a_failure()
    lab.remove()
    assert not left, f"a driver left these behind: {left}"


@pytest.fixture
def lab(kind: str, request: pytest.FixtureRequest) -> Iterator[Lab]:
    made = make_lab(kind, request)
    yield made
    finish_lab(made)


@pytest.fixture(scope="session", autouse=True)
def _cgroup_root_removed() -> Iterator[None]:
    yield
    if CGROUP_ROOT.exists():
        CGROUP_ROOT.rmdir()  # fails (and so reports) if a VM group is still in it
