"""The node API a node manager serves to its cluster manager (``tashi.nodeapi.paths``).

Every call but ``/health`` and the peer lease must carry, as its bearer token, the secret this
node manager handed its cluster manager at registration; anything else is answered 401. The
peer lease (``PEER_LEASE``, ADR 0010) is asked by the hosts this one witnesses, each with the
token the cluster manager gave it for this host (``nodeapi.peering``). Bodies are read and
answers rendered through ``tashi.nodeapi.convert``: ``NodeService`` sees only the domain's
records. Errors are answered as the cluster manager's are (``tashi.web.errors``): a failure of
a file or a program here is told as a fixed sentence, its detail logged under the request id,
which is the cluster manager's own when it sent one (``X-Request-Id``).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Annotated

from fastapi import Depends, FastAPI, Request

import tashi
from tashi.config.nodemanager import NodeManagerServiceSettings
from tashi.domain.errors import InvalidInput, NotAuthenticated
from tashi.domain.ids import HostId, InstanceId
from tashi.domain.models import NicConfig
from tashi.domain.nodes import Grant, VmStatus
from tashi.nodeapi import convert, firewall, paths
from tashi.nodeapi import schemas as s
from tashi.nodemanager.service import NodeService
from tashi.nodemanager.witnessing import WitnessBook
from tashi.runtime.ports import free_port
from tashi.web import errors, openapi
from tashi.web.json import JsonResponse
from tashi.web.limits import HttpLimits, RequestLimits
from tashi.web.requestids import RequestIds


def _check_secret(request: Request, _: openapi.Bearer) -> None:
    """The bearer must be this node's secret (``openapi.Bearer`` only documents the scheme)."""
    secret: str = request.app.state.secret
    if not hmac.compare_digest(_bearer(request).encode(), secret.encode()):
        raise NotAuthenticated("the node API answers only its cluster manager")


Authorized = Annotated[None, Depends(_check_secret)]

# What the routes may answer besides their success, each in the one error body
# (``tashi.web.openapi``): every VM route names a VM (an id that is not a number: 400; no such
# VM here: 404), may find it busy or there already (409), and may fail in the VMM driver, the
# network driver or the disks (502), or find a capability missing (503).
_VM = openapi.error_responses(openapi.AUTHENTICATED, 400, 404, 409, 502, 503)
_VM_WITH_BODY = openapi.error_responses(
    openapi.AUTHENTICATED, openapi.WITH_BODY, 404, 409, 502, 503
)
# The security-group policy: a body, a kernel that refuses (502), none enforced here (503).
_FIREWALL = openapi.error_responses(openapi.AUTHENTICATED, openapi.WITH_BODY, 502, 503)


def _message(text: str) -> JsonResponse:
    return JsonResponse({"message": text})


def _nics(nics: Sequence[NicConfig]) -> JsonResponse:
    return JsonResponse(s.NicsOut(nics=[convert.nic_wire(n) for n in nics]).model_dump())


def _action(name: str) -> str:
    return paths.VM_ACTION.replace("{action}", name)


def _listen_host(host: str) -> str:
    return host if host not in ("", "localhost") else "127.0.0.1"


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def create_app(
    node: NodeService,
    secret: str,
    witness: WitnessBook | None = None,
    *,
    limits: HttpLimits | None = None,
) -> FastAPI:
    """The node API; ``limits`` (body cap and deadline) default to ``[NodeManagerService]``'s."""
    app = FastAPI(
        title="Tashi node manager",
        version=tashi.__version__,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        default_response_class=JsonResponse,
        responses=openapi.DEFAULT,  # whatever the status, an error has the one shape
    )
    app.state.secret = secret
    errors.install(app)
    app.add_middleware(RequestLimits, limits=limits or HttpLimits.of(NodeManagerServiceSettings()))
    app.add_middleware(RequestIds)  # outermost: refusals carry the request id too

    @app.get(paths.HEALTH, response_model=s.HealthOut, responses=openapi.error_responses(500))
    async def health() -> JsonResponse:
        return JsonResponse({"status": "ok"})

    @app.post(
        paths.PEER_LEASE,
        response_model=s.PeerLeaseOut,
        responses=openapi.error_responses(openapi.AUTHENTICATED, openapi.WITH_BODY),
    )
    async def peer_lease(request: Request, body: s.PeerLeaseIn) -> JsonResponse:
        if witness is None:
            raise NotAuthenticated("this node manager witnesses no host")
        granted = witness.grant(body.hostId, _bearer(request))
        return JsonResponse(s.PeerLeaseOut(granted=granted).model_dump())

    @app.get(
        paths.GRANT,
        response_model=s.GrantOut,
        responses=openapi.error_responses(openapi.AUTHENTICATED, 400),
    )
    async def grant(_: Authorized, host_id: int) -> JsonResponse:
        subject = HostId(host_id)
        known = witness.report(subject) if witness is not None else Grant(subject, None, 0.0)
        return JsonResponse(convert.grant_wire(known).model_dump())

    @app.get(
        paths.VMS,
        response_model=list[s.VmOut],
        responses=openapi.error_responses(openapi.AUTHENTICATED),
    )
    async def list_vms(_: Authorized) -> JsonResponse:
        vms = [VmStatus(i.id, vm_id, state.value) for i, vm_id, state in node.report()]
        return JsonResponse([convert.vm_status_wire(vm).model_dump() for vm in vms])

    @app.post(paths.VMS, response_model=s.VmOut, responses=_VM_WITH_BODY)
    async def start(_: Authorized, body: s.StartIn) -> JsonResponse:
        out = await node.start(convert.instance(body.instance), body.resumeFrom)
        return JsonResponse(convert.vm_status_wire(out).model_dump())

    @app.delete(paths.VM, response_model=s.MessageOut, responses=_VM)
    async def destroy(_: Authorized, instance_id: int) -> JsonResponse:
        await node.destroy(InstanceId(instance_id))
        return _message("destroyed")

    @app.post(paths.INCOMING, response_model=s.TicketOut, responses=_VM_WITH_BODY)
    async def incoming(_: Authorized, body: s.IncomingIn) -> JsonResponse:
        ticket = await node.prepare_incoming(
            convert.instance(body.instance), free_port(_listen_host(node.advertise_host))
        )
        return JsonResponse(convert.ticket_wire(ticket).model_dump())

    @app.post(_action("shutdown"), response_model=s.MessageOut, responses=_VM)
    async def shutdown(_: Authorized, instance_id: int) -> JsonResponse:
        await node.shutdown(InstanceId(instance_id))
        return _message("shutting down")

    @app.post(_action("pause"), response_model=s.MessageOut, responses=_VM)
    async def pause(_: Authorized, instance_id: int) -> JsonResponse:
        await node.pause(InstanceId(instance_id))
        return _message("paused")

    @app.post(_action("unpause"), response_model=s.MessageOut, responses=_VM)
    async def unpause(_: Authorized, instance_id: int) -> JsonResponse:
        await node.unpause(InstanceId(instance_id))
        return _message("running")

    @app.post(_action("suspend"), response_model=s.MessageOut, responses=_VM_WITH_BODY)
    async def suspend(_: Authorized, instance_id: int, body: s.SuspendIn) -> JsonResponse:
        await node.suspend(InstanceId(instance_id), body.target)
        return _message("suspending")

    @app.post(_action("migrate"), response_model=s.MigrationOut, responses=_VM_WITH_BODY)
    async def migrate(_: Authorized, instance_id: int, body: s.MigrateIn) -> JsonResponse:
        stats = await node.migrate(InstanceId(instance_id), convert.ticket(body.ticket))
        return JsonResponse(convert.transfer_wire(stats).model_dump())

    @app.post(_action("finishIncoming"), response_model=s.VmOut, responses=_VM)
    async def finish_incoming(_: Authorized, instance_id: int) -> JsonResponse:
        out = await node.finish_incoming(InstanceId(instance_id))
        return JsonResponse(convert.vm_status_wire(out).model_dump())

    @app.post(_action("call"), response_model=s.MessageOut, responses=_VM_WITH_BODY)
    async def call(_: Authorized, instance_id: int, body: s.VmmCallIn) -> JsonResponse:
        return _message(await node.call(InstanceId(instance_id), body.op, body.arg))

    @app.post(_action("cpuShare"), response_model=s.MessageOut, responses=_VM_WITH_BODY)
    async def cpu_share(_: Authorized, instance_id: int, body: s.CpuShareIn) -> JsonResponse:
        await node.set_cpu_share(InstanceId(instance_id), body.share)
        return _message(f"cpu share set to {body.share}")

    @app.post(_action("attachDisk"), response_model=s.MessageOut, responses=_VM_WITH_BODY)
    async def attach_disk(_: Authorized, instance_id: int, body: s.AttachDiskIn) -> JsonResponse:
        await node.attach_disk(InstanceId(instance_id), convert.disk(body.disk))
        return _message(f"{body.disk.uri} attached")

    @app.post(_action("detachDisk"), response_model=s.MessageOut, responses=_VM_WITH_BODY)
    async def detach_disk(_: Authorized, instance_id: int, body: s.DetachDiskIn) -> JsonResponse:
        await node.detach_disk(InstanceId(instance_id), body.uri, body.timeout)
        return _message(f"{body.uri} detached")

    @app.post(_action("attachNic"), response_model=s.NicsOut, responses=_VM_WITH_BODY)
    async def attach_nic(_: Authorized, instance_id: int, body: s.AttachNicIn) -> JsonResponse:
        done = await node.attach_nic(InstanceId(instance_id), convert.nic(body.nic))
        return _nics(done.nics)

    @app.post(_action("detachNic"), response_model=s.NicsOut, responses=_VM_WITH_BODY)
    async def detach_nic(_: Authorized, instance_id: int, body: s.DetachNicIn) -> JsonResponse:
        done = await node.detach_nic(InstanceId(instance_id), body.mac, body.timeout)
        return _nics(done.nics)

    @app.post(_action("backupDisk"), response_model=s.MessageOut, responses=_VM_WITH_BODY)
    async def backup_disk(_: Authorized, instance_id: int, body: s.BackupDiskIn) -> JsonResponse:
        await node.backup_disk(InstanceId(instance_id), body.uri, body.snapshot, body.timeout)
        return _message(f"{body.uri} copied to {body.snapshot}")

    @app.put(paths.FIREWALL, response_model=firewall.FirewallOut, responses=_FIREWALL)
    async def put_firewall(_: Authorized, body: firewall.FirewallIn) -> JsonResponse:
        try:
            policy = firewall.policy(body)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        version = await node.set_firewall(policy)
        return JsonResponse(firewall.FirewallOut(version=version).model_dump())

    @app.get(paths.FIREWALL, response_model=firewall.FirewallOut, responses=_FIREWALL)
    async def get_firewall(_: Authorized) -> JsonResponse:
        version = node.firewall_version()
        return JsonResponse(firewall.FirewallOut(version=version).model_dump())

    return app
