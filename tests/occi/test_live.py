"""OCCI on a live virtual cluster (``tashi-cluster``: a cluster manager, its scheduler and two
QEMU hosts): an HTTP client (httpx, speaking GFD.223 as written: pOCCI and occi-py, the OCCI
clients on PyPI, are Python 2 only, docs/occi.md) discovers the model, creates a compute from
an ``os_tpl`` and a ``resource_tpl``, reads it in every rendering until its real guest runs and
prints its boot marker, stops, starts, restarts and suspends it with ``?action=`` in each
rendering, resizes it while it is stopped, and deletes it, its root disk with it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tashi.api.schemas import UserIn
from tashi.devcluster.harness import Running, ha_options, running_cluster
from tashi.images.markers import UP
from tests.occi.conftest import COMPUTE_KIND, INFRA

# TASHI_TEST_OCCI_FABRIC: another fabric, for a second run of these tests beside a first
FABRIC = os.environ.get("TASHI_TEST_OCCI_FABRIC", "198.18.80.0/20")
OCCI_PORT = 8787
ACTION = "http://schemas.ogf.org/occi/infrastructure/compute/action#"
JSON = "application/occi+json"
WAIT = 180.0


@dataclass
class Live:
    running: Running
    http: httpx.Client

    def compute(self, location: str) -> dict[str, Any]:
        reply = self.http.get(location, headers={"Accept": JSON})
        assert reply.status_code == 200, reply.text
        doc: dict[str, Any] = reply.json()
        return doc

    def wait_state(self, location: str, state: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT
        doc = self.compute(location)
        while doc["attributes"]["occi.compute.state"] != state:
            assert time.monotonic() < deadline, f"{location} is not {state}: {doc['attributes']}"
            time.sleep(0.5)
            doc = self.compute(location)
        return doc

    def console(self, iid: str) -> str:
        return self.running.admin.vmm_specific_call(iid, "console:64").message


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_image: Any) -> Iterator[Live]:
    if os.geteuid() != 0:
        pytest.fail("the OCCI live test runs a virtual cluster: run it as root")
    options = ha_options(FABRIC, tiny_image, hostMemory=2048)
    with running_cluster(tmp_path_factory.mktemp("occi"), 2, options) as running:
        running.admin.register_user(UserIn(name="alice", password="alice-password-1"))
        endpoint = f"http://{running.plan.cm_address}:{OCCI_PORT}"
        with httpx.Client(
            base_url=endpoint,
            auth=("alice", "alice-password-1"),
            headers={"User-Agent": "tashi-tests OCCI/1.2"},
            timeout=60.0,
        ) as http:
            yield Live(running, http)


def _template(doc: dict[str, Any], rel: str, term: str | None = None) -> dict[str, Any]:
    found = [m for m in doc["mixins"] if rel in m.get("depends", []) and term in (None, m["term"])]
    assert found, f"no {rel} mixin {term or ''} in {[m['term'] for m in doc['mixins']]}"
    return found[0]


def _wait_console(live: Live, iid: str, count: int = 1) -> None:
    deadline = time.monotonic() + WAIT
    while live.console(iid).count(UP) < count:
        assert time.monotonic() < deadline, f"compute {iid} did not print {UP!r} {count} times"
        time.sleep(0.5)


@pytest.mark.timeout(600)  # the cluster's start and stop count: 183 s seen on a loaded machine
def test_a_compute_lives_and_dies_through_occi(live: Live) -> None:
    found = live.http.get("/-/", headers={"Accept": JSON})
    assert found.status_code == 200 and found.headers["server"].endswith("OCCI/1.2")
    model = found.json()
    assert "/compute/" in [k.get("location") for k in model["kinds"]]
    os_tpl = _template(model, f"{INFRA}os_tpl")
    size = _template(model, f"{INFRA}resource_tpl", "tashi.tiny")

    body = "\n".join(
        [
            f"Category: {COMPUTE_KIND}",
            f'Category: {os_tpl["term"]}; scheme="{os_tpl["scheme"]}"; class="mixin"',
            f'Category: {size["term"]}; scheme="{size["scheme"]}"; class="mixin"',
            'X-OCCI-Attribute: occi.core.title="live occi"',
        ]
    )
    made = live.http.post("/compute/", content=body, headers={"Content-Type": "text/plain"})
    assert made.status_code == 201, made.text
    location = made.headers["location"]
    assert made.text.strip() == f"X-OCCI-Location: {location}"

    doc = live.wait_state(location, "active")
    iid = doc["id"]
    assert doc["attributes"]["occi.compute.cores"] == 1
    assert doc["attributes"]["occi.core.title"] == "live occi"
    assert doc["mixins"] == [
        f"{os_tpl['scheme']}{os_tpl['term']}",
        f"{size['scheme']}{size['term']}",
    ]
    nic = next(link for link in doc["links"] if link["kind"].endswith("#networkinterface"))
    plain = live.http.get(location).text.splitlines()
    assert 'X-OCCI-Attribute: occi.compute.state="active"' in plain
    headers = live.http.get(location, headers={"Accept": "text/occi"}).headers
    assert 'occi.compute.state="active"' in headers["x-occi-attribute"]
    _wait_console(live, iid)  # a real guest booted and said so on its serial console
    tashi = live.running.admin.get_instance(iid)
    assert tashi.state == "Running"
    # the address the DhcpDns hook assigned, as ipnetworkinterface carries it
    assert nic["mixins"] == [f"{INFRA[:-1]}/networkinterface#ipnetworkinterface"]
    assert nic["attributes"]["occi.networkinterface.mac"] == tashi.nics[0].mac
    assert tashi.nics[0].ip
    assert nic["attributes"]["occi.networkinterface.address"] == tashi.nics[0].ip

    # stop with the text/occi rendering: the action's category in the headers
    stop = live.http.post(
        f"{location}?action=stop",
        headers={
            "Content-Type": "text/occi",
            "Accept": "text/occi",
            "Category": f'stop; scheme="{ACTION}"; class="action"',
            "X-OCCI-Attribute": 'method="acpioff"',
        },
    )
    assert stop.status_code == 200 and stop.text == "OK\n", stop.text
    live.wait_state(location, "inactive")
    assert live.running.admin.get_instance(iid).state == "Stopped"

    # a stopped compute is resized by a partial update
    resized = live.http.post(
        location,
        content=json.dumps({"attributes": {"occi.compute.memory": 0.25}}),
        headers={"Content-Type": JSON, "Accept": JSON},
    )
    assert resized.status_code == 200, resized.text
    assert resized.json()["attributes"]["occi.compute.memory"] == 0.25
    assert live.running.admin.get_instance(iid).memory == 256

    # start with the JSON rendering
    start = live.http.post(
        f"{location}?action=start",
        content=json.dumps({"action": f"{ACTION}start"}),
        headers={"Content-Type": JSON, "Accept": JSON},
    )
    assert start.status_code == 200, start.text
    live.wait_state(location, "active")
    _wait_console(live, iid)

    # restart with text/plain: the guest boots again
    before = live.console(iid).count(UP)
    restart = live.http.post(
        f"{location}?action=restart",
        content=f'Category: restart; scheme="{ACTION}"; class="action"\n',
        headers={"Content-Type": "text/plain"},
    )
    assert restart.status_code == 200, restart.text
    _wait_console(live, iid, before + 1)

    # suspend (hibernate: saved to the store) and start again (resumed)
    suspend = live.http.post(
        f"{location}?action=suspend",
        content=json.dumps({"action": f"{ACTION}suspend"}),
        headers={"Content-Type": JSON},
    )
    assert suspend.status_code == 200, suspend.text
    live.wait_state(location, "suspended")
    assert live.running.admin.get_instance(iid).state == "Suspended"
    live.http.post(
        f"{location}?action=start",
        content=json.dumps({"action": f"{ACTION}start"}),
        headers={"Content-Type": JSON},
    ).raise_for_status()
    live.wait_state(location, "active")

    root = f"{live.running.admin.get_instance(iid).name}-root.qcow2"
    assert root in {i.imageName for i in live.running.admin.get_images()}
    gone = live.http.delete(location)
    assert gone.status_code == 200, gone.text
    assert live.http.get(location).status_code == 404
    assert root not in {i.imageName for i in live.running.admin.get_images()}
