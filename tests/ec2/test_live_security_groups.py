"""Security groups enforced on the live 2-host cluster, with real packets and boto3: a target VM
in group ``target`` (a createVm instance in it by its ``securityGroups`` hint, so it can migrate)
listens on TCP 8000; a client VM launched with boto3 in group ``client`` pings it and connects to
it every few seconds and prints what got through on its console; a probe address on the VMs'
bridge in a host's namespace does the same from outside any group. What the target's group lets
in changes as rules are authorized and revoked (ICMP from the client group, TCP 8000 from the
probe's address), promptly, and stays so across a live migration of the target and a restart of
its node manager; the client's own pings are answered though its group lets nothing in
(replies to its connections), and it reads its groups' names from its metadata. Last,
outbound rules: with the client's group letting nothing out its probes fail, with TCP 8000 to
the target's group only that gets through, and a target whose group lets nothing out still
answers what it lets in.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import re
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tashi.api.schemas import DiskIn, InstanceIn
from tashi.devcluster.processes import wait_for
from tashi.domain.errors import NotFound
from tashi.domain.launches import instance_id
from tests.ec2.conftest import Ec2Cluster
from tests.ec2.test_live_instances import TINY, code, tiny_ami
from tests.ec2.test_live_metadata import Vm, console, host_of

BOOT = 300.0  # two TCG boots on a busy 2-core machine, with DHCP and metadata
PROMPT = 30.0  # seconds a rule change may take to show in the client's probes (a few rounds)
PORT = 8000
PROBE = re.compile(r"TASHI-TEST-PROBE n=(\d+) icmp=(\w+) tcp=(\w+)")
GROUPS = re.compile(r"TASHI-TEST-GROUPS (\S*)")
TARGET = """#!/bin/sh
# security groups target {token}
printf '#!/bin/sh\\necho hello\\n' >/tmp/hello
chmod +x /tmp/hello
nc -ll -p {port} -e /tmp/hello &
printf '\\nTASHI-TEST-LISTENING\\n' >/dev/ttyS0
"""
CLIENT = """#!/bin/sh
# security groups client {token}
groups="$(timeout 5 wget -q -O - http://169.254.169.254/latest/meta-data/security-groups)"
printf '\\nTASHI-TEST-GROUPS %s\\n' "$(echo $groups | tr ' ' ',')" >/dev/ttyS0
n=0
while [ "$n" -lt 5000 ]; do
    if ping -c 1 -W 1 {target} >/dev/null 2>&1; then icmp=ok; else icmp=no; fi
    got="$(timeout 3 nc {target} {port} </dev/null 2>/dev/null)"
    if [ "$got" = hello ]; then tcp=ok; else tcp=no; fi
    printf '\\nTASHI-TEST-PROBE n=%s icmp=%s tcp=%s\\n' "$n" "$icmp" "$tcp" >/dev/ttyS0
    n=$((n + 1))
    sleep 1
done
"""

pytestmark = pytest.mark.timeout(1500)


@dataclass
class World:
    ec2: Ec2Cluster
    client: Any
    target: Vm
    prober: Vm
    address: str  # the target's
    groups: dict[str, str]  # name -> id
    probe_ns: str
    probe_address: str
    probe: str = ""  # the probe's link in ``probe_ns``

    def place_probe(self) -> None:
        """The probe on the client's host, where it is now: its bridge stays as long as the
        client does (a host's vxlan network goes with its last VM), so after HA started the
        client again elsewhere, the probe follows it."""
        self.remove_probe()
        self.probe_ns = self.ec2.running.plan.host_ns(host_of(self.ec2, self.prober))
        self.probe = _probe(self.probe_ns, self.probe_address)

    def remove_probe(self) -> None:
        if self.probe:
            subprocess.run(["ip", "-n", self.probe_ns, "link", "del", self.probe], check=False)
            self.probe = ""

    def probes(self) -> list[tuple[int, str, str]]:
        return [(int(n), i, t) for n, i, t in PROBE.findall(console(self.ec2, self.prober))]

    def last(self) -> int:
        found = self.probes()
        return found[-1][0] if found else -1

    def wait_probe(self, icmp: str, tcp: str, *, after: int | None = None) -> float:
        """Seconds until the client prints a probe with these results (one begun after the
        probe numbered ``after``, by default the last one printed now)."""
        since = self.last() if after is None else after
        started = time.monotonic()

        def seen() -> bool:
            return any(n > since + 1 and (i, t) == (icmp, tcp) for n, i, t in self.probes())

        wait_for(f"the client's probe to show icmp={icmp} tcp={tcp}", seen, PROMPT, every=0.5)
        return time.monotonic() - started

    def from_probe(self, what: str) -> bool:
        """Whether the probe address reaches the target: ``ping`` or ``tcp`` (port 8000)."""
        enter = ["ip", "netns", "exec", self.probe_ns, "busybox"]
        if what == "ping":
            argv = [*enter, "ping", "-c", "1", "-W", "2", self.address]
            return subprocess.run(argv, capture_output=True, check=False).returncode == 0
        argv = [*enter, "nc", "-w", "3", self.address, str(PORT)]
        done = subprocess.run(argv, input=b"", capture_output=True, timeout=15, check=False)
        return b"hello" in done.stdout

    def probe_sees(self, what: str, wanted: bool) -> float:
        started = time.monotonic()
        wait_for(f"the probe's {what} to be {wanted}", lambda: self.from_probe(what) is wanted,
                 PROMPT, every=0.5)  # fmt: skip
        return time.monotonic() - started

    def authorize(self, group: str, **perm: Any) -> None:
        self.client.authorize_security_group_ingress(
            GroupId=self.groups[group], IpPermissions=[perm]
        )

    def revoke(self, group: str, **perm: Any) -> None:
        self.client.revoke_security_group_ingress(GroupId=self.groups[group], IpPermissions=[perm])


def _probe(host_ns: str, address: str) -> str:
    """A veth with ``address`` whose peer is a port of the VMs' bridge in ``host_ns``."""
    name = f"tsg{secrets.token_hex(3)}"
    for argv in (
        ["link", "add", name, "type", "veth", "peer", "name", f"{name}b"],
        ["link", "set", f"{name}b", "master", "vxbr1", "up"],
        ["addr", "add", f"{address}/24", "dev", name],
        ["link", "set", name, "up"],
    ):
        subprocess.run(["ip", "-n", host_ns, *argv], check=True, capture_output=True)
    return name


@pytest.fixture(scope="module")
def world(ec2: Ec2Cluster) -> Iterator[World]:
    client = ec2.client("alice")
    admin = ec2.running.admin
    groups = {
        name: client.create_security_group(GroupName=name, Description=f"the {name}s")["GroupId"]
        for name in ("target", "client")
    }
    alice = admin.get_user("alice").id
    target_data = TARGET.format(token=uuid.uuid4(), port=PORT).encode()
    made = admin.create_vm(
        InstanceIn(
            name=f"sg-target-{secrets.token_hex(2)}",
            disks=[DiskIn(uri="tashi-tiny.qcow2")],
            hints={
                "userData": base64.b64encode(target_data).decode(),
                "securityGroups": groups["target"],
            },
            userId=alice,
        )
    )
    target = Vm(instance_id(made.id), target_data)
    address = wait_for(
        "the target's address",
        lambda: admin.get_instance(made.id).nics[0].ip,
        BOOT,
        every=1.0,
    )
    client_data = CLIENT.format(token=uuid.uuid4(), target=address, port=PORT).encode()
    launched = client.run_instances(
        ImageId=tiny_ami(client),
        InstanceType=TINY,
        MinCount=1,
        MaxCount=1,
        UserData=client_data.decode(),
        SecurityGroupIds=[groups["client"]],
    )
    prober = Vm(launched["Instances"][0]["InstanceId"], client_data)
    probe_address = ".".join([*address.split(".")[:3], "251"])
    world = World(ec2, client, target, prober, address, groups, "", probe_address)
    try:
        wait_for("the target to listen", lambda: "TASHI-TEST-LISTENING" in console(ec2, target),
                 BOOT, every=1.0)  # fmt: skip
        wait_for("the client's probes", world.probes, BOOT, every=1.0)
        world.place_probe()
        yield world
    finally:
        world.remove_probe()
        client.terminate_instances(InstanceIds=[prober.ec2_id])
        with contextlib.suppress(NotFound):
            admin.destroy_vm(target.iid)


def test_a_group_with_no_rules_lets_nothing_in_but_replies(world: World) -> None:
    assert GROUPS.search(console(world.ec2, world.prober))[1] == "client"  # type: ignore[index]
    world.wait_probe("no", "no")
    assert not world.from_probe("ping") and not world.from_probe("tcp")
    described = world.client.describe_instances(InstanceIds=[world.prober.ec2_id])
    shown = described["Reservations"][0]["Instances"][0]["SecurityGroups"]
    assert shown == [{"GroupName": "client", "GroupId": world.groups["client"]}]


def test_rules_let_in_what_they_name_promptly_and_only_that(world: World) -> None:
    pairs = [{"GroupId": world.groups["client"]}]
    world.authorize("target", IpProtocol="icmp", FromPort=8, ToPort=-1, UserIdGroupPairs=pairs)
    took = world.wait_probe("ok", "no")  # the client's pings answered: replies come back to it
    print(f"ICMP from the client group let in after {took:.1f} s")
    assert not world.from_probe("ping")  # the probe is not in the client group
    world.authorize(
        "target", IpProtocol="tcp", FromPort=PORT, ToPort=PORT,
        IpRanges=[{"CidrIp": f"{world.probe_address}/32"}],
    )  # fmt: skip
    took = world.probe_sees("tcp", True)
    print(f"TCP {PORT} from the probe let in after {took:.1f} s")
    world.wait_probe("ok", "no")  # and still not from the client
    for group in ("client", "target"):
        with pytest.raises(ClientError) as used:
            world.client.delete_security_group(GroupId=world.groups[group])
        assert code(used) == "DependencyViolation"


def test_the_rules_follow_the_target_when_it_migrates(world: World) -> None:
    admin = world.ec2.running.admin
    here = host_of(world.ec2, world.target)
    there = 2 if here == 1 else 1
    admin.migrate_vm(world.target.iid, f"host{there}")
    wait_for(
        f"the target to run on host{there}",
        lambda: (
            admin.get_instance(world.target.iid).state == "Running"
            and host_of(world.ec2, world.target) == there
        ),
        180,
        every=1.0,
    )
    world.wait_probe("ok", "no")
    assert world.from_probe("tcp") and not world.from_probe("ping")


def test_a_revoked_rule_closes_promptly(world: World) -> None:
    pairs = [{"GroupId": world.groups["client"]}]
    world.revoke("target", IpProtocol="icmp", FromPort=8, ToPort=-1, UserIdGroupPairs=pairs)
    took = world.wait_probe("no", "no")
    print(f"ICMP from the client group shut out after {took:.1f} s")
    assert world.from_probe("tcp")


def test_the_rules_stay_across_a_restart_of_the_node_manager(world: World) -> None:
    host = host_of(world.ec2, world.target)
    for verb in ("rm", "add"):
        done = world.ec2.running.cli(verb, f"nm:{host}")
        assert done.returncode == 0, done.stderr
    # kept by the new node manager (or, if the cluster manager took the host for lost, started
    # again elsewhere by HA: its listener comes back after a boot, under the same rules; the
    # client too, if it was there, and the probe then follows it)
    admin = world.ec2.running.admin

    def running(vm: Vm) -> bool:
        return admin.get_instance(vm.iid).state == "Running"

    for vm in (world.target, world.prober):
        wait_for(f"{vm.ec2_id} to run", functools.partial(running, vm), BOOT, every=1.0)
    world.place_probe()
    wait_for("the target's listener", lambda: world.from_probe("tcp"), BOOT, every=2.0)
    assert not world.from_probe("ping")
    world.authorize(
        "target", IpProtocol="icmp", FromPort=-1, ToPort=-1,
        IpRanges=[{"CidrIp": f"{world.probe_address}/32"}],
    )  # fmt: skip
    world.probe_sees("ping", True)  # a change after the restart reaches the new node manager
    world.wait_probe("no", "no")


def _lets_out(world: World, vm: Vm, group: str) -> str:
    """The rules of ``group``'s outbound chain on ``vm``'s host, as ``nft`` lists them."""
    ns = world.ec2.running.plan.host_ns(host_of(world.ec2, vm))
    owner = world.ec2.running.admin.get_user("alice").id
    chain = f"e-{owner}-{world.groups[group]}"
    argv = ["ip", "netns", "exec", ns, "nft", "list", "chain", "netdev", "tashi-secgroups", chain]
    listed = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    return "\n".join(line.strip() for line in listed.splitlines() if "accept" in line)


def test_outbound_rules_hold_what_a_vm_sends_but_never_its_replies(world: World) -> None:
    everywhere = {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    pairs = [{"GroupId": world.groups["client"]}]
    world.authorize("target", IpProtocol="icmp", FromPort=8, ToPort=-1, UserIdGroupPairs=pairs)
    world.authorize("target", IpProtocol="tcp", FromPort=PORT, ToPort=PORT, UserIdGroupPairs=pairs)
    world.wait_probe("ok", "ok")
    # the target may send nothing of its own: its answers to the client still go out
    world.client.revoke_security_group_egress(GroupId=world.groups["target"],
                                              IpPermissions=[everywhere])  # fmt: skip
    wait_for("the target's host to hold it", lambda: _lets_out(world, world.target, "target") == "",
             PROMPT, every=0.5)  # fmt: skip
    world.wait_probe("ok", "ok")
    assert world.from_probe("tcp")  # the probe's address is let in; the answer goes out
    # the client may send nothing: its probes fail though the target would let them in
    world.client.revoke_security_group_egress(GroupId=world.groups["client"],
                                              IpPermissions=[everywhere])  # fmt: skip
    took = world.wait_probe("no", "no")
    print(f"the client's outbound traffic shut off after {took:.1f} s")
    to_target = {"IpProtocol": "tcp", "FromPort": PORT, "ToPort": PORT,
                 "UserIdGroupPairs": [{"GroupId": world.groups["target"]}]}  # fmt: skip
    world.client.authorize_security_group_egress(GroupId=world.groups["client"],
                                                 IpPermissions=[to_target])  # fmt: skip
    took = world.wait_probe("no", "ok")
    print(f"TCP {PORT} to the target group let out after {took:.1f} s")
    shown = world.client.describe_security_groups(GroupIds=[world.groups["client"]])
    [out] = shown["SecurityGroups"][0]["IpPermissionsEgress"]
    assert (out["IpProtocol"], out["FromPort"], out["UserIdGroupPairs"][0]["GroupId"]) == (
        "tcp", PORT, world.groups["target"],
    )  # fmt: skip
    for group in ("client", "target"):  # AWS's default again: everything out
        world.client.authorize_security_group_egress(GroupId=world.groups[group],
                                                     IpPermissions=[everywhere])  # fmt: skip
    world.wait_probe("ok", "ok")
