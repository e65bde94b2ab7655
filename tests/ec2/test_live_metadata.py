"""Instance metadata on a live virtual cluster, read by the tiny guest itself: an instance
launched with boto3, and one made with createVm (its user data in a hint), print their own
instance id and their user data's digest from 169.254.169.254; their user data (a script the
guest runs) then reads its instance id every two seconds. Two VMs on one host each read only
their own, before and after one migrates, and after the host's node manager is killed and
started again; a stranger on the VMs' network with one's MAC and address, and the host itself,
get nothing. A VM made with the hint nocloud=true finds its id on its NoCloud seed disk, which
goes with it."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tashi.api.schemas import DiskIn, InstanceIn
from tashi.devcluster.processes import wait_for
from tashi.domain.errors import NotFound
from tashi.domain.launches import instance_id
from tests.ec2.conftest import Ec2Cluster
from tests.nodemanager.metadata import probe

TINY = "tashi.tiny"
BOOT = 240.0  # a TCG boot on a busy 2-core machine, with its DHCP and metadata
MARKER = re.compile(
    r"TASHI-GUEST-METADATA instance-id=(\S+) uptime=\S+ user-data-sha256=(\S+) user-data=(.*)"
)
READ = re.compile(r"TASHI-TEST-READ n=(\d+) id=(\S+)")
DHCP = re.compile(r"TASHI-GUEST-DHCP eth0 ([0-9.]+)")
READER = """#!/bin/sh
# metadata reader {token}
n=0
while [ "$n" -lt 600 ]; do
    id="$(timeout 5 wget -q -O - http://169.254.169.254/latest/meta-data/instance-id 2>/dev/null)"
    printf '\\nTASHI-TEST-READ n=%s id=%s\\n' "$n" "${{id:-none}}" >/dev/ttyS0
    n=$((n + 1))
    sleep 2
done
"""

pytestmark = pytest.mark.timeout(900)


@dataclass
class Vm:
    ec2_id: str
    user_data: bytes

    @property
    def iid(self) -> int:
        return int(self.ec2_id[2:], 16)


def console(ec2: Ec2Cluster, vm: Vm, host: int | None = None) -> str:
    """The serial console of the VM on ``host`` (default: its current host; a migrated VM starts
    a new one there); empty while it has none."""
    if host is None:
        if ec2.running.admin.get_instance(vm.iid).hostId is None:
            return ""
        host = host_of(ec2, vm)
    path = ec2.running.layout.nm_state(host) / "vms" / str(vm.iid) / "console.log"
    text = ""
    for part in (path.with_name("console.log.1"), path):  # the log cap moves a full log aside
        try:
            text += part.read_text(errors="replace")
        except FileNotFoundError:
            continue
    return text


def host_of(ec2: Ec2Cluster, vm: Vm) -> int:
    found = ec2.running.admin.get_instance(vm.iid)
    assert found.hostId is not None, found
    host = next(h for h in ec2.running.admin.get_hosts() if h.id == found.hostId)
    return int(host.name.removeprefix("host"))


def reads(ec2: Ec2Cluster, vm: Vm, host: int | None = None) -> list[tuple[int, str]]:
    return [(int(n), i) for n, i in READ.findall(console(ec2, vm, host))]


def wait_reads(
    ec2: Ec2Cluster, vm: Vm, after: int, timeout: float = 120.0, host: int | None = None
) -> int:
    """Wait until the VM read its own id on ``host`` (default: its current one) after read
    ``after``; the number of that read."""

    def fresh() -> int | None:
        mine = [n for n, i in reads(ec2, vm, host) if n > after and i == instance_id(vm.iid)]
        return max(mine) if mine else None

    return wait_for(f"{vm.ec2_id} to read its metadata", fresh, timeout=timeout, every=1.0)


def assert_only_own(ec2: Ec2Cluster, vms: list[Vm]) -> None:
    for vm in vms:
        others = {instance_id(o.iid) for o in vms if o is not vm}
        seen = {i for _, i in reads(ec2, vm)}
        assert not seen & others, f"{vm.ec2_id} read another VM's id: {seen}"


def launch(client: Any, ami: str) -> Vm:
    """An instance launched with boto3, its user data the reader."""
    user_data = READER.format(token=uuid.uuid4()).encode()
    made = client.run_instances(
        ImageId=ami, InstanceType=TINY, MinCount=1, MaxCount=1, UserData=user_data.decode()
    )
    return Vm(made["Instances"][0]["InstanceId"], user_data)


def create(ec2: Ec2Cluster) -> Vm:
    """An instance made with createVm, its user data (the reader) in its hint ``userData``.
    Its disk is an overlay, so it can migrate (an EC2 launch's is a persistent copy, which
    migrateVm refuses: the target cannot take the image's lock while the source holds it)."""
    user_data = READER.format(token=uuid.uuid4()).encode()
    made = ec2.running.admin.create_vm(
        InstanceIn(
            name=f"reader-{secrets.token_hex(2)}",
            disks=[DiskIn(uri="tashi-tiny.qcow2")],
            hints={"userData": base64.b64encode(user_data).decode()},
        )
    )
    return Vm(instance_id(made.id), user_data)


@pytest.fixture(scope="module")
def pair(ec2: Ec2Cluster) -> Iterator[list[Vm]]:
    client = ec2.client("alice")
    images = client.describe_images(Filters=[{"Name": "name", "Values": ["tashi-tiny.qcow2"]}])
    ami = images["Images"][0]["ImageId"]
    vms = [launch(client, ami), create(ec2)]
    try:
        yield vms
    finally:
        client.terminate_instances(InstanceIds=[vms[0].ec2_id])
        with contextlib.suppress(NotFound):
            ec2.running.admin.destroy_vm(vms[1].iid)


def test_a_launched_vm_prints_its_own_instance_id_and_user_data(
    ec2: Ec2Cluster, pair: list[Vm]
) -> None:
    for vm in pair:
        found = wait_for(
            f"{vm.ec2_id}'s metadata marker",
            lambda vm=vm: MARKER.search(console(ec2, vm)),  # type: ignore[misc]
            timeout=BOOT,
            every=1.0,
        )
        assert found[1] == instance_id(vm.iid) == vm.ec2_id
        assert found[2] == hashlib.sha256(vm.user_data).hexdigest()
        assert found[3].strip() == "#!/bin/sh"
        wait_reads(ec2, vm, -1)  # its user data runs, and reads its own id
    assert_only_own(ec2, pair)


def test_two_vms_on_one_host_each_read_their_own_across_a_migration(
    ec2: Ec2Cluster, pair: list[Vm]
) -> None:
    first, second = pair
    here, there = host_of(ec2, first), host_of(ec2, second)
    target = here if here != there else (1 if here == 2 else 2)
    if here == there:  # already together: both read their own on one host
        wait_reads(ec2, first, max(n for n, _ in reads(ec2, first)))
        wait_reads(ec2, second, max(n for n, _ in reads(ec2, second)))
    before = max(n for n, _ in reads(ec2, second))
    ec2.running.admin.migrate_vm(second.iid, f"host{target}")
    wait_for(
        f"{second.ec2_id} to run on host{target}",
        lambda: (
            ec2.running.admin.get_instance(second.iid).state == "Running"
            and host_of(ec2, second) == target
        ),
        timeout=180,
        every=1.0,
    )
    last = wait_reads(ec2, second, before)  # on its new host, from its new host's service
    print(f"{second.ec2_id} host{there} -> host{target}: read {before}, then {last} there")
    wait_reads(ec2, first, max(n for n, _ in reads(ec2, first)))
    assert host_of(ec2, first) == host_of(ec2, second) or here == there
    assert_only_own(ec2, pair)


def test_the_vms_read_their_own_after_their_node_manager_restarts(
    ec2: Ec2Cluster, pair: list[Vm]
) -> None:
    host = host_of(ec2, pair[0])
    here = [vm for vm in pair if host_of(ec2, vm) == host]
    done = ec2.running.cli("rm", f"nm:{host}")
    assert done.returncode == 0, done.stderr
    done = ec2.running.cli("add", f"nm:{host}")
    assert done.returncode == 0, done.stderr
    for vm in here:
        wait_for(
            f"{vm.ec2_id} to run",
            lambda vm=vm: ec2.running.admin.get_instance(vm.iid).state == "Running",  # type: ignore[misc]
            timeout=120,
            every=0.5,
        )
        now = host_of(ec2, vm)
        if now != host:  # HA took the host for lost and started the VM again elsewhere
            last = wait_reads(ec2, vm, -1)
            print(f"{vm.ec2_id} restarted on host{now} by HA: read {last} there")
            continue
        seen = wait_for(
            f"{vm.ec2_id}'s console on host{host}",
            lambda vm=vm: reads(ec2, vm, host),  # type: ignore[misc]
            timeout=60,
            every=0.5,
        )
        after = max(n for n, _ in seen) + 1  # a read begun after the new node manager started
        last = wait_reads(ec2, vm, after, host=host)
        print(f"{vm.ec2_id} on host{host}: reads up to {after} -> {last} after the restart")
    assert_only_own(ec2, pair)


def test_a_stranger_with_a_vms_mac_and_address_and_the_host_get_nothing(
    ec2: Ec2Cluster, pair: list[Vm]
) -> None:
    vm = pair[0]
    host_ns = ec2.running.plan.host_ns(host_of(ec2, vm))
    address = DHCP.findall(console(ec2, vm))[-1]
    mac = ec2.running.admin.get_instance(vm.iid).nics[0].mac
    status, why = probe.fetch(host_ns, "/latest/meta-data/instance-id")
    assert status == 0, why
    with stranger(host_ns, mac, address) as ns:
        status, why = probe.fetch(ns, "/latest/meta-data/instance-id")
        assert status == 0, why
        status, why = probe.fetch(ns, "/latest/user-data")
        assert status == 0, why


@pytest.fixture
def nocloud_vm(ec2: Ec2Cluster) -> Iterator[int]:
    admin = ec2.running.admin
    made = admin.create_vm(
        InstanceIn(
            name=f"seeded-{secrets.token_hex(2)}",
            disks=[DiskIn(uri="tashi-tiny.qcow2")],
            hints={"nocloud": "true"},
        )
    )
    try:
        yield made.id
    finally:
        with contextlib.suppress(NotFound):  # the test destroyed it already
            admin.destroy_vm(made.id)


def test_a_vm_with_a_nocloud_seed_reads_its_id_from_it(ec2: Ec2Cluster, nocloud_vm: int) -> None:
    vm = Vm(instance_id(nocloud_vm), b"")
    line = wait_for(
        "the NoCloud marker",
        lambda: re.search(r"TASHI-GUEST-NOCLOUD device=(\S+) instance-id=(\S+)", console(ec2, vm)),
        timeout=BOOT,
        every=1.0,
    )
    assert line[1] == "/dev/vdb" and line[2] == instance_id(nocloud_vm)
    host = host_of(ec2, vm)
    seed = ec2.running.layout.nm_state(host) / "vms" / str(nocloud_vm) / "nocloud-seed.iso"
    assert seed.is_file()
    ec2.running.admin.destroy_vm(nocloud_vm)
    wait_for("the seed to go with its VM", lambda: not seed.exists(), timeout=60, every=0.5)


class stranger:  # noqa: N801 - a context manager named for what it makes
    """A namespace on the VM's network bridge (``vxbr1``) of the host, with the VM's MAC and
    address and a default route through the network's gateway; removed at the end."""

    def __init__(self, host_ns: str, mac: str, address: str) -> None:
        self.host_ns, self.mac, self.address = host_ns, mac, address
        self.ns = f"tashi-t-{secrets.token_hex(3)}-spoof"
        self.port = f"tsp{secrets.token_hex(3)}"

    def __enter__(self) -> str:
        gateway = ".".join([*self.address.split(".")[:3], "1"])
        _ip("netns", "add", self.ns)
        try:
            _ip("-n", self.host_ns, "link", "add", self.port, "type", "veth", "peer", "name",
                "eth0", "netns", self.ns)  # fmt: skip
            _ip("-n", self.host_ns, "link", "set", self.port, "master", "vxbr1", "up")
            _ip("-n", self.ns, "link", "set", "eth0", "address", self.mac, "up")
            _ip("-n", self.ns, "link", "set", "lo", "up")
            _ip("-n", self.ns, "addr", "add", f"{self.address}/24", "dev", "eth0")
            _ip("-n", self.ns, "route", "add", "default", "via", gateway)
        except BaseException:
            self.__exit__()
            raise
        return self.ns

    def __exit__(self, *_: object) -> None:
        subprocess.run(["ip", "-n", self.host_ns, "link", "del", self.port], check=False)
        subprocess.run(["ip", "netns", "del", self.ns], check=False)
        assert not Path(f"/run/netns/{self.ns}").exists()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)
