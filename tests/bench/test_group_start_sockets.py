"""Nothing the cluster manager keeps grows with the hosts it has called (issue 25.3): a group
of 100 started across 100 hollow hosts (the node manager's own code over the fake VMM, one
process; ``bench/hollow.py``) has a real ``tashi-cm`` open a connection to each; once they are
idle, its sweep closes them, and its connections out are back to none. (It kept every one, in
CLOSE-WAIT once the node's server had closed its end: 1,502 after one group start on 100
hosts.) Its connections out are its TCP sockets whose local port is not the one it listens on.
The security-group audit calls every host every 30 s, so connections come and go meanwhile (10
to 15 s open, then none): the test waits for a moment with none, which never came before.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest
from bench.cluster import IMAGE, Workspace

from bench import scale
from tashi.api.schemas import CreateManyIn, DiskIn
from tashi.clustermanager.hosts import gateway

HOSTS = 100
SETTLE = gateway.IDLE + gateway.IDLE / 2 + 20  # idle, a sweep's period, a loaded machine


def connections_out(pid: int, port: int) -> int:
    """``pid``'s TCP sockets, in any state but listening, whose local port is not ``port``."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            count += fields[9] in inodes and local_port != port and fields[3] != "0A"
    return count


def until(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.2)  # polling the condition just above
    return bool(condition())  # type: ignore[operator]


@pytest.mark.timeout(300)
def test_a_group_start_on_100_hosts_leaves_no_connection_open() -> None:
    plan = scale.plan_for(
        quick=True, stores=("sqlite",), max_hosts=None, steps=None, vms_per_host=1, period=None
    )
    workspace = Workspace()
    try:
        with contextlib.ExitStack() as stack:
            setup = scale.start_system("sqlite", plan, workspace, stack)
            cm, port = setup.cm, int(setup.cm.base_url.rsplit(":", 1)[1])
            answer = setup.hollow.order(300.0, op="grow", count=HOSTS)
            hosts = [int(host_id) for _name, host_id in answer["hosts"]]
            # the security-group sync calls each new host: wait for those to be swept too
            assert until(lambda: connections_out(cm.pid, port) == 0, SETTLE)

            made = setup.admin.create_many(
                CreateManyIn(
                    basename="g",
                    count=HOSTS,
                    memory=scale.VM_MEMORY,
                    disks=[DiskIn(uri=IMAGE)],
                    groupName="g",
                    userId=setup.filler,
                )
            )
            setup.admin.activate_group([(i.id, h) for i, h in zip(made, hosts, strict=True)])
            opened = connections_out(cm.pid, port)
            assert opened >= HOSTS / 2  # it called them, and keeps the connections a while
            assert until(lambda: connections_out(cm.pid, port) == 0, SETTLE), (
                f"{connections_out(cm.pid, port)} of {opened} connections still open"
            )
            ours = {i.id for i in made}
            states = {i.state for i in setup.admin.get_instances() if i.id in ours}
            assert states == {"Running"}
    finally:
        workspace.remove()
