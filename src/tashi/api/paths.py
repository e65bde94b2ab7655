"""Every route of the cluster manager's public API, in one place.

``{ref}`` accepts an id or a name (instances, hosts, users, networks), as the original client's
``--instance``/``--host`` did; a name that matches several instances is refused with a hint to
use the id. Every list (GET) takes ``?after=&limit=``: keyset paging, ADR 0003.
"""

from __future__ import annotations

PREFIX = "/v1"

HEALTH = "/health"
METRICS = "/metrics"
OPENAPI = f"{PREFIX}/openapi.json"  # GET, authenticated

TOKEN = f"{PREFIX}/auth/token"  # POST login -> TokenOut; DELETE logout
WHOAMI = f"{PREFIX}/auth/whoami"  # GET -> UserOut

INSTANCES = f"{PREFIX}/instances"  # GET list (filters), POST createVm
INSTANCE = f"{PREFIX}/instances/{{ref}}"  # GET one, DELETE destroyVm (?force=true: admin)
CREATE_MANY = f"{PREFIX}/instances:createMany"  # POST CreateMany
# POST ActivateGroupIn -> list[InstanceOut] (agent/admin): place a whole group or none (ADR 0009)
ACTIVATE_GROUP = f"{PREFIX}/instances:activateGroup"
DESTROY_MANY = f"{PREFIX}/instances:destroyMany"  # POST BatchSelect -> BatchResult
SHUTDOWN_MANY = f"{PREFIX}/instances:shutdownMany"  # POST BatchSelect -> BatchResult
# GET ?after=N&timeout=S -> ChangesOut: long-poll until the change version differs from N (agents)
INSTANCE_CHANGES = f"{PREFIX}/instances:changes"
INSTANCE_HISTORY = f"{PREFIX}/instances/{{ref}}/history"  # GET -> list[InstanceEventOut]
INSTANCE_ACTION = f"{PREFIX}/instances/{{ref}}/{{action}}"
# action in: shutdown, pause, unpause, suspend, resume (POST, no body),
#            migrate (MigrateIn), vmmSpecificCall (VmmCallIn), activate (ActivateIn; agent),
#            hold (HoldIn; agent: Pending/Held -> Held with a reason),
#            cpuShare (CpuShareIn; SLA@SOI adaptCpuShare)
INSTANCE_ACTIONS = (
    "shutdown",
    "pause",
    "unpause",
    "suspend",
    "resume",
    "migrate",
    "vmmSpecificCall",
    "activate",
    "hold",
    "cpuShare",
)

# POST NicAddressIn -> NicAddressOut (agent/admin): allocate NIC {index}'s address (DHCP/DNS hook)
NIC_ADDRESS = f"{PREFIX}/instances/{{ref}}/nics/{{index}}/address"
ADDRESSES = f"{PREFIX}/addresses"  # GET ?network=N -> list[AddressOut] (agent/admin)

HOSTS = f"{PREFIX}/hosts"  # GET list, POST registerHost (HostIn)
HOST = f"{PREFIX}/hosts/{{ref}}"  # GET one, DELETE unregisterHost
HOST_STATE = f"{PREFIX}/hosts/{{ref}}/state"  # PUT HostStateIn
HOST_NOTES = f"{PREFIX}/hosts/{{ref}}/notes"  # PUT HostNotesIn
HOST_CONFIG = f"{PREFIX}/hosts/{{ref}}/config"  # PATCH HostConfigIn (empty value deletes a key)
RESERVATIONS = f"{PREFIX}/hosts/{{ref}}/reservations"  # GET -> ReservationOut
RESERVATION = f"{PREFIX}/hosts/{{ref}}/reservations/{{user}}"  # PUT add, DELETE remove

NETWORKS = f"{PREFIX}/networks"  # GET list, POST NetworkIn (admin)
NETWORK = f"{PREFIX}/networks/{{ref}}"  # DELETE (admin)

USERS = f"{PREFIX}/users"  # GET list, POST registerUser (UserIn, admin)
USER = f"{PREFIX}/users/{{ref}}"  # GET one, DELETE unregisterUser (admin)

ACCESS_KEYS = f"{PREFIX}/accessKeys"  # GET listAccessKeys, POST createAccessKey (EC2 API keys)
ACCESS_KEY = f"{PREFIX}/accessKeys/{{key}}"  # DELETE deleteAccessKey

IMAGES = f"{PREFIX}/images"  # GET list, POST ImageOpIn (copy/clone/rebase) -> 202 ImageTaskOut
IMAGE = f"{PREFIX}/images/{{name}}"  # DELETE removeImage (admin) -> ImageOut
IMAGE_TASKS = f"{PREFIX}/imageTasks"  # GET your image tasks (an admin's: all)
IMAGE_TASK = f"{PREFIX}/imageTasks/{{task}}"  # GET one -> ImageTaskOut
