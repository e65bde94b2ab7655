"""A stand-in node manager for test_kernel.py: run inside a host's network namespace (``ip netns
exec``), it starts the real metadata service (veth, sysctl, nftables, listener) and serves the
VMs named on its command line (``<instance id>:<tap>:<mac>``), restored as after a restart.
It prints ``ready`` and serves until its standard input closes."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from tashi.domain.ids import InstanceId, NetworkId
from tashi.network.base import Attachment
from tashi.nodemanager.metadata.answers import Answers
from tashi.nodemanager.metadata.plumbing import KernelPlumbing
from tashi.nodemanager.metadata.service import MetadataService
from tashi.nodemanager.metadata.tokens import Tokens, load_key
from tests.nodemanager.metadata.guests import SITE, instance


async def main(state: Path, vms: list[str]) -> None:
    answers = Answers(Tokens(load_key(state), lambda: datetime.now(UTC).timestamp()))
    metadata = MetadataService(KernelPlumbing(), answers, SITE, lambda: datetime.now(UTC))
    await metadata.start()
    assert metadata.serving
    served = []
    for vm in vms:
        iid, tap, mac = vm.split(":", 2)
        attachment = Attachment(InstanceId(int(iid)), 0, NetworkId(1), mac, tap)
        served.append((instance(int(iid)), [attachment]))
    await metadata.restore(served)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await metadata.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2:]))
