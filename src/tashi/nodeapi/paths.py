"""Routes of both sides of the node contract."""

from __future__ import annotations

PREFIX = "/v1"

# --- on the cluster manager, called by node managers (role ``node``) ----------------------
NODE_REGISTER = f"{PREFIX}/nodes"  # POST RegisterIn -> RegisterOut
NODE_HEARTBEAT = f"{PREFIX}/nodes/{{host_id}}/heartbeat"  # POST HeartbeatIn -> HeartbeatOut
NODE_EVENTS = f"{PREFIX}/nodes/{{host_id}}/events"  # POST EventsIn -> EventsOut

# --- on a node manager, called by its cluster manager ------------------------------------
HEALTH = "/health"  # open: liveness only, no state
VMS = f"{PREFIX}/vms"  # GET -> list[VmOut]; POST StartIn -> VmOut (instantiate or resume)
VM = f"{PREFIX}/vms/{{instance_id}}"  # GET -> VmOut; DELETE destroy
VM_ACTION = f"{PREFIX}/vms/{{instance_id}}/{{action}}"
# actions: shutdown, pause, unpause (no body); suspend (SuspendIn; answers at once, the result
# comes as an event); migrate (MigrateIn -> MigrationOut); finishIncoming (-> VmOut);
# call (VmmCallIn -> MessageOut); cpuShare (CpuShareIn); attachDisk (AttachDiskIn), detachDisk
# (DetachDiskIn), backupDisk (BackupDiskIn): volumes of a running VM (EC2's EBS); attachNic
# (AttachNicIn -> NicsOut), detachNic (DetachNicIn -> NicsOut): NICs of a running VM
VM_ACTIONS = (
    "shutdown",
    "pause",
    "unpause",
    "suspend",
    "migrate",
    "finishIncoming",
    "call",
    "cpuShare",
    "attachDisk",
    "detachDisk",
    "backupDisk",
    "attachNic",
    "detachNic",
)
INCOMING = f"{PREFIX}/vms:incoming"  # POST IncomingIn -> TicketOut (migration target)
GRANT = f"{PREFIX}/peer/grants/{{host_id}}"  # GET -> GrantOut: my last grant to that host
#: PUT firewall.FirewallIn -> FirewallOut: the security-group policy of this host's VMs (whole,
#: idempotent); GET -> FirewallOut: the version it enforces (``nodeapi/firewall.py``)
FIREWALL = f"{PREFIX}/firewall"

# --- on a node manager, called by the hosts it witnesses (a ``peering.token`` as bearer) ---
PEER_LEASE = f"{PREFIX}/peer/lease"  # POST PeerLeaseIn -> PeerLeaseOut


def vm_action(instance_id: int, action: str) -> str:
    return VM_ACTION.format(instance_id=instance_id, action=action)
