"""A stand-in node manager for test_kernel.py: run inside a host's network namespace (``ip netns
exec``), it starts the real security-group service (and the metadata service, as ``tashi-nm``
does) and takes one command a line on its standard input, JSON, answering ``ok <version>`` or
``error <message>`` a line:

* ``{"op": "restore", "vms": [VM, ...]}``: after a start, guard (and serve) exactly these;
* ``{"op": "attach", "vm": VM}``, ``{"op": "detach", "id": 42}``: a VM comes, goes;
* ``{"op": "update", "policy": {...}, "egress": {...}}``: the cluster manager's policy
  (``firewall.as_data``, inbound and outbound).

A VM is ``{"id", "tap", "mac", "ip", "groups": [sg ids]}`` (owner: user 7). It prints ``ready``
once started and stops when its standard input closes."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tashi.domain import firewall
from tashi.domain.errors import TashiError
from tashi.domain.ids import InstanceId, NetworkId
from tashi.domain.models import Instance, NicConfig
from tashi.domain.secgroups import launched_in
from tashi.network.base import Attachment
from tashi.nodemanager.metadata.answers import Answers
from tashi.nodemanager.metadata.plumbing import KernelPlumbing
from tashi.nodemanager.metadata.service import MetadataService
from tashi.nodemanager.metadata.tokens import Tokens, load_key
from tashi.nodemanager.secgroups.plumbing import KernelPlumbing as FirewallPlumbing
from tashi.nodemanager.secgroups.service import FirewallService
from tests.nodemanager.metadata.guests import SITE, instance


def vm_of(given: dict[str, Any]) -> tuple[Instance, list[Attachment]]:
    iid = int(given["id"])
    nic = NicConfig(network=NetworkId(1), mac=given["mac"], ip=given.get("ip"))
    base = instance(iid)
    groups = [(g, "g") for g in given.get("groups", [])]
    hints = {**base.hints, **(launched_in(groups) if groups else {})}
    inst = replace(base, nics=(nic,), hints=hints)
    return inst, [Attachment(InstanceId(iid), 0, NetworkId(1), given["mac"], given["tap"])]


async def main(state: Path) -> None:
    answers = Answers(Tokens(load_key(state), lambda: datetime.now(UTC).timestamp()))
    metadata = MetadataService(KernelPlumbing(), answers, SITE, lambda: datetime.now(UTC))
    await metadata.start()
    guard = FirewallService(FirewallPlumbing(), state)
    await guard.start()
    assert metadata.serving and guard.enforcing
    print("ready", flush=True)
    while line := await asyncio.to_thread(sys.stdin.readline):
        command = json.loads(line)
        try:
            await run(command, guard, metadata)
            print(f"ok {guard.version}", flush=True)
        except TashiError as exc:
            print(f"error {exc.message}", flush=True)
    await metadata.close()
    await guard.close()


async def run(command: dict[str, Any], guard: FirewallService, metadata: MetadataService) -> None:
    op = command["op"]
    if op == "restore":
        vms = [vm_of(v) for v in command["vms"]]
        await guard.restore(vms)
        await metadata.restore(vms)
    elif op == "attach":
        inst, taps = vm_of(command["vm"])
        await guard.attach(inst, taps)
        await metadata.attach(inst, taps)
    elif op == "detach":
        await guard.detach(InstanceId(command["id"]))
        await metadata.detach(InstanceId(command["id"]))
    elif op == "update":
        await guard.update(firewall.from_data(command["policy"], command.get("egress")))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
