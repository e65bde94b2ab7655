"""The node contract's one seam between wire models and service types.

``schemas`` (pydantic, camelCase) is what travels; ``tashi.domain.nodes`` and the domain's
``Instance`` are what the services on both sides take and return. Every conversion between the
two is here, used by the handlers (``frontends/rest/nodes.py``, ``nodemanager/routes.py``), the
clients (``cmclient``, ``nmclient``) and the node manager's files that keep wire JSON on disk
(``nodemanager.outbox``, ``nodemanager.vmdirs``, ``nodemanager.lease``), so a wire change
never ripples into a service. For each record, ``<noun>(wire)`` reads one and
``<noun>_wire(record)`` renders one.
"""

from __future__ import annotations

from dataclasses import replace

from tashi.domain import launches
from tashi.domain.ids import HostId, InstanceId, NetworkId, UserId
from tashi.domain.models import DiskConfig, Instance, NicConfig
from tashi.domain.nodes import (
    Acknowledged,
    Grant,
    Heartbeat,
    NodeEvent,
    Registration,
    ReportKey,
    Ticket,
    Transfer,
    VmReport,
    VmStatus,
    Witness,
    WitnessSet,
    report_key,
)
from tashi.domain.states import InstanceState
from tashi.nodeapi import schemas as s


def instance_wire(instance: Instance) -> s.InstanceWire:
    """The instance as a node manager needs it: hints starting with ``__`` are the cluster
    manager's own bookkeeping and stay there, but for what the EC2 API launched it with
    (``launch``), which its guest's metadata is made of."""
    return s.InstanceWire(
        id=instance.id,
        name=instance.name,
        userId=instance.user_id,
        cores=instance.cores,
        memory=instance.memory,
        cpuShare=instance.cpu_share,
        disks=[disk_wire(d) for d in instance.disks],
        nics=[nic_wire(n) for n in instance.nics],
        hints={k: v for k, v in instance.hints.items() if not k.startswith("__")},
        launch=launches.carried(instance.hints),
    )


def disk_wire(config: DiskConfig) -> s.DiskWire:
    """A disk as a node runs it (``copy`` is the cluster manager's business)."""
    return s.DiskWire(uri=config.uri, persistent=config.persistent, device=config.device)


def nic(wire: s.NicWire) -> NicConfig:
    return NicConfig(network=NetworkId(wire.network), mac=wire.mac, ip=wire.ip)


def nic_wire(nic: NicConfig) -> s.NicWire:
    return s.NicWire(network=nic.network, mac=nic.mac, ip=nic.ip)


def disk(wire: s.DiskWire) -> DiskConfig:
    return DiskConfig(uri=wire.uri, persistent=wire.persistent, device=wire.device)


def instance(wire: s.InstanceWire) -> Instance:
    """The instance a node was sent (its ``state`` is ``Running``: a node knows only VMs)."""
    return Instance(
        id=InstanceId(wire.id),
        name=wire.name,
        user_id=UserId(wire.userId),
        state=InstanceState.Running,
        cores=wire.cores,
        memory=wire.memory,
        cpu_share=wire.cpuShare,
        disks=tuple(disk(d) for d in wire.disks),
        nics=tuple(nic(n) for n in wire.nics),
        hints={**wire.hints, **launches.restored(wire.launch)},
    )


def vm_report_wire(report: VmReport) -> s.VmReport:
    return s.VmReport(
        instanceId=report.instance.id,
        vmId=report.vm_id,
        state=report.state,
        instance=instance_wire(report.instance),
    )


def vm_report(wire: s.VmReport) -> VmReport:
    """A reported VM, under the id it is reported by (``instanceId``; its instance's own)."""
    inst = replace(instance(wire.instance), id=InstanceId(wire.instanceId))
    return VmReport(instance=inst, vm_id=wire.vmId, state=wire.state)


def vm_status_wire(status: VmStatus) -> s.VmOut:
    return s.VmOut(instanceId=status.instance_id, vmId=status.vm_id, state=status.state)


def vm_status(wire: s.VmOut) -> VmStatus:
    return VmStatus(instance_id=InstanceId(wire.instanceId), vm_id=wire.vmId, state=wire.state)


def event_wire(event: NodeEvent) -> s.VmEvent:
    return s.VmEvent(
        instanceId=event.instance_id,
        vmId=event.vm_id,
        kind=event.kind,
        detail=event.detail,
        at=event.at,
    )


def event(wire: s.VmEvent) -> NodeEvent:
    return NodeEvent(
        instance_id=InstanceId(wire.instanceId),
        vm_id=wire.vmId,
        kind=wire.kind,
        detail=wire.detail,
        at=wire.at,
    )


def ticket_wire(ticket: Ticket) -> s.TicketOut:
    return s.TicketOut(host=ticket.host, port=ticket.port)


def ticket(wire: s.TicketOut) -> Ticket:
    return Ticket(host=wire.host, port=wire.port)


def transfer_wire(transfer: Transfer) -> s.MigrationOut:
    return s.MigrationOut(
        totalSeconds=transfer.total_seconds,
        downtimeMs=transfer.downtime_ms,
        transferredBytes=transfer.transferred_bytes,
    )


def transfer(wire: s.MigrationOut) -> Transfer:
    return Transfer(
        total_seconds=wire.totalSeconds,
        downtime_ms=wire.downtimeMs,
        transferred_bytes=wire.transferredBytes,
    )


def grant_wire(grant: Grant) -> s.GrantOut:
    return s.GrantOut(hostId=grant.host_id, lastGrantAge=grant.last_grant_age, uptime=grant.uptime)


def grant(wire: s.GrantOut) -> Grant:
    return Grant(host_id=HostId(wire.hostId), last_grant_age=wire.lastGrantAge, uptime=wire.uptime)


def witness_set_wire(witnesses: WitnessSet) -> s.WitnessSetWire:
    return s.WitnessSetWire(
        epoch=witnesses.epoch,
        hosts=[
            s.WitnessWire(hostId=w.host_id, endpoint=w.endpoint, token=w.token)
            for w in witnesses.hosts
        ],
    )


def witness_set(wire: s.WitnessSetWire) -> WitnessSet:
    return WitnessSet(
        epoch=wire.epoch,
        hosts=tuple(
            Witness(host_id=HostId(w.hostId), endpoint=w.endpoint, token=w.token)
            for w in wire.hosts
        ),
    )


def registration_wire(reg: Registration) -> s.RegisterIn:
    return s.RegisterIn(
        name=reg.name,
        memory=reg.memory,
        cores=reg.cores,
        cpuSpeed=reg.cpu_speed,
        version=reg.version,
        endpoint=reg.endpoint,
        secret=reg.secret,
        peerSecret=reg.peer_secret,
        vms=[vm_report_wire(r) for r in reg.vms],
        underlay=reg.underlay,
        witnessEpoch=reg.witness_epoch,
        fenced=list(reg.fenced),
        firewall=reg.firewall,
    )


def registration(wire: s.RegisterIn) -> Registration:
    return Registration(
        name=wire.name,
        memory=wire.memory,
        cores=wire.cores,
        cpu_speed=wire.cpuSpeed,
        version=wire.version,
        endpoint=wire.endpoint,
        secret=wire.secret,
        peer_secret=wire.peerSecret,
        vms=tuple(vm_report(r) for r in wire.vms),
        underlay=wire.underlay,
        witness_epoch=wire.witnessEpoch,
        fenced=tuple(InstanceId(i) for i in wire.fenced),
        firewall=wire.firewall,
    )


def heartbeat_wire(beat: Heartbeat) -> s.HeartbeatIn:
    return s.HeartbeatIn(
        load=beat.load,
        freeMemory=beat.free_memory,
        memory=beat.memory,
        cores=beat.cores,
        vms=[vm_report_wire(r) for r in beat.vms],
        underlay=beat.underlay,
        witnessEpoch=beat.witness_epoch,
        fenced=list(beat.fenced),
        firewall=beat.firewall,
    )


def heartbeat(wire: s.HeartbeatIn) -> Heartbeat:
    return Heartbeat(
        load=wire.load,
        free_memory=wire.freeMemory,
        memory=wire.memory,
        cores=wire.cores,
        vms=tuple(vm_report(r) for r in wire.vms),
        underlay=wire.underlay,
        witness_epoch=wire.witnessEpoch,
        fenced=tuple(InstanceId(i) for i in wire.fenced),
        firewall=wire.firewall,
    )


def heartbeat_key(wire: s.HeartbeatIn | s.HeartbeatKeyIn) -> ReportKey:
    """The report's key (``domain.nodes.heartbeat_key`` of ``heartbeat(wire)``) without
    converting its VMs' instances: what a renewal needs."""
    vms = ((r.instanceId, r.vmId, r.state) for r in wire.vms)
    return report_key(wire.memory, wire.cores, wire.underlay, wire.witnessEpoch, vms, wire.firewall)


def _reply(ack: Acknowledged) -> dict[str, object]:
    """What both replies carry (``schemas._Reply``)."""
    return {
        "hostId": ack.host_id,
        "state": ack.state,
        "leaseTime": ack.lease_time,
        "peers": list(ack.peers) if ack.peers is not None else None,
        "witnesses": witness_set_wire(ack.witnesses) if ack.witnesses is not None else None,
    }


def registered_wire(ack: Acknowledged) -> s.RegisterOut:
    return s.RegisterOut.model_validate(
        {
            **_reply(ack),
            "heartbeatInterval": ack.heartbeat_interval,
            "expireHostTime": ack.expire_host_time,
        }
    )


def heartbeat_reply_wire(ack: Acknowledged) -> s.HeartbeatOut:
    return s.HeartbeatOut.model_validate({**_reply(ack), "up": ack.up})


def acknowledged(wire: s.RegisterOut | s.HeartbeatOut) -> Acknowledged:
    registered = wire if isinstance(wire, s.RegisterOut) else None
    return Acknowledged(
        host_id=HostId(wire.hostId),
        state=wire.state,
        up=wire.up if isinstance(wire, s.HeartbeatOut) else True,
        lease_time=wire.leaseTime,
        peers=tuple(wire.peers) if wire.peers is not None else None,
        witnesses=witness_set(wire.witnesses) if wire.witnesses is not None else None,
        heartbeat_interval=registered.heartbeatInterval if registered else 0.0,
        expire_host_time=registered.expireHostTime if registered else 0.0,
    )


# --- the node manager's files, which keep the wire form (readable across versions) ----------


def instance_json(inst: Instance) -> str:
    """``instance.json`` of a VM directory (``nodemanager.vmdirs``)."""
    return instance_wire(inst).model_dump_json()


def instance_from_json(text: str | bytes) -> Instance:
    """Raises ``ValueError`` (pydantic's ``ValidationError``) when it is not one."""
    return instance(s.InstanceWire.model_validate_json(text))


def event_json(ev: NodeEvent) -> str:
    """One event file of the node manager's outbox (``nodemanager.outbox``)."""
    return event_wire(ev).model_dump_json()


def event_from_json(text: str | bytes) -> NodeEvent:
    """Raises ``ValueError`` (pydantic's ``ValidationError``) when it is not one."""
    return event(s.VmEvent.model_validate_json(text))


def witness_set_doc(witnesses: WitnessSet) -> dict[str, object]:
    """The witness set as ``lease.json`` keeps it (``nodemanager.lease``)."""
    return witness_set_wire(witnesses).model_dump()


def witness_set_from_doc(doc: object) -> WitnessSet:
    """Raises ``ValueError`` (pydantic's ``ValidationError``) when it is not one."""
    return witness_set(s.WitnessSetWire.model_validate(doc))
