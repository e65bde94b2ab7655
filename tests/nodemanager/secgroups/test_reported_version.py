"""The node manager names the version of the security-group policy it enforces in its
registration and every heartbeat (``Reporter`` with the ``FirewallService``), as it travels on
the wire, so that the cluster manager sends the policy again only when it differs; a reporter
given none names none (the cluster manager then audits the host blind)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tashi.domain.firewall import Allow, Policy
from tashi.domain.nodes import Acknowledged, Heartbeat, Registration
from tashi.nodeapi import convert
from tashi.nodeapi.schemas import HeartbeatIn, HeartbeatOut, RegisterIn, RegisterOut
from tashi.nodemanager.secgroups.service import FirewallService
from tests.fixtures.reporting import reporter

SSH = Allow("tcp", 22, 22, ("10.0.0.0/8",))


@dataclass
class Cm:
    """The cluster manager's node client as the reporter sees it: it keeps what it was sent,
    as it travels (``nodeapi.convert``)."""

    sent: list[RegisterIn | HeartbeatIn] = field(default_factory=list)

    async def register(self, request: Registration) -> Acknowledged:
        self.sent.append(convert.registration_wire(request))
        reply = RegisterOut(hostId=1, state="Normal", heartbeatInterval=2, expireHostTime=6)
        return convert.acknowledged(reply)

    async def heartbeat(self, host_id: int, report: Heartbeat) -> Acknowledged:
        self.sent.append(convert.heartbeat_wire(report))
        return convert.acknowledged(HeartbeatOut(hostId=1, state="Normal", up=True))


@pytest.mark.anyio
async def test_registration_and_heartbeats_carry_the_version_enforced(tmp_path: Path) -> None:
    service = FirewallService(None, tmp_path)
    await service.start()
    cm = Cm()
    rep = reporter(cm, tmp_path, firewall=service)
    await rep.heartbeat()  # registers first
    await rep.heartbeat()
    assert [type(s) for s in cm.sent] == [RegisterIn, HeartbeatIn]
    assert [s.firewall for s in cm.sent] == [Policy().version] * 2
    policy = Policy({"7:sg-1": (SSH,)})
    await service.update(policy)  # the cluster manager's send
    await rep.heartbeat()
    assert cm.sent[-1].firewall == policy.version != Policy().version
    # round trip: what the cluster manager reads is what was sent
    wire = HeartbeatIn.model_validate_json(cm.sent[-1].model_dump_json())
    assert convert.heartbeat(wire).firewall == policy.version


@pytest.mark.anyio
async def test_a_reporter_without_a_firewall_names_no_version(tmp_path: Path) -> None:
    cm = Cm()
    rep = reporter(cm, tmp_path)
    await rep.heartbeat()
    await rep.heartbeat()
    assert [s.firewall for s in cm.sent] == [None, None]
