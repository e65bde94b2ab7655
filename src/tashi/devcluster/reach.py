"""Do the VMs the cluster manager calls Running really run? Each answers a ping on its address.

A live qemu on the right host (``invariants.one_place``) can still be a frozen guest: a VM
left paused after a transfer nobody finished is a process like any other. From the cluster
manager's namespace, which has a leg on every VM network (``.1`` of each), every Running
instance's NIC with an address must answer an ICMP echo (busybox ``ping``, as the guests' own
userland; the tiny guest configures its address by DHCP at boot, retrying until it gets its
static lease, and keeps it across suspend, resume and migration). Paused instances are not
asked. ``faultrun`` retries the check with the other snapshot checks, so a guest still booting
after a restart has the settle window to come up.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from tashi.api.schemas import InstanceOut

TIMEOUT = 2  # seconds one echo may take (a TCG guest on a loaded machine answers in ms)


def silent(netns: str, instances: Sequence[InstanceOut]) -> list[str]:
    """The Running instances' addresses that did not answer, as violations."""
    targets = [
        (inst, nic.ip)
        for inst in instances
        if inst.state == "Running"
        for nic in inst.nics
        if nic.ip
    ]
    pings = [
        (
            inst,
            ip,
            subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{netns}", "busybox", "ping", "-c", "1", "-W",
                 str(TIMEOUT), "-q", ip],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
        )
        for inst, ip in targets
    ]  # fmt: skip
    found = []
    for inst, ip, ping in pings:
        try:
            answered = ping.wait(TIMEOUT + 5) == 0
        except subprocess.TimeoutExpired:
            ping.kill()
            ping.wait()
            answered = False
        if not answered:
            found.append(f"instance {inst.name} ({inst.id}) is Running but {ip} does not answer")
    return found
