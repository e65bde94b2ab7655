"""The node contract's seam (``nodeapi.convert``): every record survives the trip to the wire
and back, and the instance a node is sent leaves the cluster manager's own hints behind."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from tashi.domain.ids import HostId, InstanceId, NetworkId, UserId
from tashi.domain.models import DiskConfig, Instance, NicConfig
from tashi.domain.nodes import (
    Acknowledged,
    Grant,
    Heartbeat,
    NodeEvent,
    Registration,
    Ticket,
    Transfer,
    VmReport,
    VmStatus,
    Witness,
    WitnessSet,
)
from tashi.domain.states import InstanceState
from tashi.nodeapi import convert

VM = Instance(
    id=InstanceId(5),
    name="vm5",
    user_id=UserId(2),
    state=InstanceState.Running,
    cores=2,
    memory=256,
    cpu_share=1500,
    disks=(DiskConfig(uri="a.qcow2"), DiskConfig(uri="b.img", persistent=True)),
    nics=(NicConfig(network=NetworkId(1), mac="52:54:00:00:00:05", ip="198.18.0.5"),),
    hints={"display": "vnc"},
)
WITNESSES = WitnessSet(epoch=3, hosts=(Witness(HostId(2), "http://h2:9883", "t2"),))


def test_an_instance_goes_without_the_cluster_managers_own_hints() -> None:
    marked = replace(VM, hints={"__x": "1", "display": "vnc"})
    assert convert.instance_wire(marked).hints == {"display": "vnc"}
    assert convert.instance(convert.instance_wire(VM)) == VM
    assert convert.instance_from_json(convert.instance_json(VM)) == VM


def test_reports_and_replies_survive_the_trip() -> None:
    report = VmReport(instance=VM, vm_id=9, state="running")
    registration = Registration(
        name="h1",
        memory=4096,
        cores=4,
        version="1",
        endpoint="http://h1:9883",
        secret="s" * 40,
        peer_secret="p" * 40,
        vms=(report,),
        witness_epoch=2,
        fenced=(InstanceId(6),),
        underlay="198.18.253.1",
    )
    assert convert.registration(convert.registration_wire(registration)) == registration
    beat = Heartbeat(vms=(report,), load=0.5, free_memory=100, fenced=(InstanceId(6),))
    assert convert.heartbeat(convert.heartbeat_wire(beat)) == beat
    registered = Acknowledged(
        host_id=HostId(1),
        state="Normal",
        lease_time=10.0,
        peers=("198.18.253.2",),
        witnesses=WITNESSES,
        heartbeat_interval=2.0,
        expire_host_time=6.0,
    )
    assert convert.acknowledged(convert.registered_wire(registered)) == registered
    beaten = Acknowledged(host_id=HostId(1), state="Drained", up=True, witnesses=None)
    assert convert.acknowledged(convert.heartbeat_reply_wire(beaten)) == beaten
    assert convert.witness_set_from_doc(convert.witness_set_doc(WITNESSES)) == WITNESSES


def test_answers_and_events_survive_the_trip() -> None:
    at = datetime(2026, 12, 7, tzinfo=UTC)
    event = NodeEvent(instance_id=InstanceId(5), kind="exited", at=at, vm_id=9, detail="bye")
    assert convert.event(convert.event_wire(event)) == event
    assert convert.event_from_json(convert.event_json(event)) == event
    status = VmStatus(instance_id=InstanceId(5), vm_id=9, state="incoming")
    assert convert.vm_status(convert.vm_status_wire(status)) == status
    assert convert.ticket(convert.ticket_wire(Ticket("h2", 4444))) == Ticket("h2", 4444)
    transfer = Transfer(total_seconds=1.5, downtime_ms=None, transferred_bytes=10)
    assert convert.transfer(convert.transfer_wire(transfer)) == transfer
    grant = Grant(host_id=HostId(3), last_grant_age=None, uptime=4.0)
    assert convert.grant(convert.grant_wire(grant)) == grant
