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
from typing import Annotated

from fastapi import Depends, FastAPI, Request

import tashi
from tashi.config.nodemanager import NodeManagerServiceSettings
from tashi.domain.errors import NotAuthenticated
from tashi.domain.ids import HostId, InstanceId
from tashi.nodeapi import convert, paths
from tashi.nodeapi import schemas as s
from tashi.nodemanager.service import NodeService
from tashi.nodemanager.witnessing import WitnessBook
from tashi.runtime.ports import free_port
from tashi.web import errors
from tashi.web.json import JsonResponse
from tashi.web.limits import HttpLimits, RequestLimits
from tashi.web.requestids import RequestIds


def _check_secret(request: Request) -> None:
    secret: str = request.app.state.secret
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), secret):
        raise NotAuthenticated("the node API answers only its cluster manager")


Authorized = Annotated[None, Depends(_check_secret)]


def _message(text: str) -> JsonResponse:
    return JsonResponse({"message": text})


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
    )
    app.state.secret = secret
    errors.install(app)
    app.add_middleware(RequestLimits, limits=limits or HttpLimits.of(NodeManagerServiceSettings()))
    app.add_middleware(RequestIds)  # outermost: refusals carry the request id too

    @app.get(paths.HEALTH)
    async def health() -> JsonResponse:
        return JsonResponse({"status": "ok"})

    @app.post(paths.PEER_LEASE)
    async def peer_lease(request: Request, body: s.PeerLeaseIn) -> JsonResponse:
        if witness is None:
            raise NotAuthenticated("this node manager witnesses no host")
        granted = witness.grant(body.hostId, _bearer(request))
        return JsonResponse(s.PeerLeaseOut(granted=granted).model_dump())

    @app.get(paths.GRANT)
    async def grant(_: Authorized, host_id: int) -> JsonResponse:
        if witness is None:
            return JsonResponse(
                s.GrantOut(hostId=host_id, lastGrantAge=None, uptime=0.0).model_dump()
            )
        return JsonResponse(convert.grant_wire(witness.report(HostId(host_id))).model_dump())

    @app.get(paths.VMS)
    async def list_vms(_: Authorized) -> JsonResponse:
        return JsonResponse(
            [{"instanceId": i.id, "vmId": v, "state": st.value} for i, v, st in node.report()]
        )

    @app.post(paths.VMS)
    async def start(_: Authorized, body: s.StartIn) -> JsonResponse:
        out = await node.start(convert.instance(body.instance), body.resumeFrom)
        return JsonResponse(convert.vm_status_wire(out).model_dump())

    @app.delete(paths.VM)
    async def destroy(_: Authorized, instance_id: int) -> JsonResponse:
        await node.destroy(InstanceId(instance_id))
        return _message("destroyed")

    @app.post(paths.INCOMING)
    async def incoming(_: Authorized, body: s.IncomingIn) -> JsonResponse:
        ticket = await node.prepare_incoming(
            convert.instance(body.instance), free_port(_listen_host(node.advertise_host))
        )
        return JsonResponse(convert.ticket_wire(ticket).model_dump())

    @app.post(paths.VM_ACTION.replace("{action}", "shutdown"))
    async def shutdown(_: Authorized, instance_id: int) -> JsonResponse:
        await node.shutdown(InstanceId(instance_id))
        return _message("shutting down")

    @app.post(paths.VM_ACTION.replace("{action}", "pause"))
    async def pause(_: Authorized, instance_id: int) -> JsonResponse:
        await node.pause(InstanceId(instance_id))
        return _message("paused")

    @app.post(paths.VM_ACTION.replace("{action}", "unpause"))
    async def unpause(_: Authorized, instance_id: int) -> JsonResponse:
        await node.unpause(InstanceId(instance_id))
        return _message("running")

    @app.post(paths.VM_ACTION.replace("{action}", "suspend"))
    async def suspend(_: Authorized, instance_id: int, body: s.SuspendIn) -> JsonResponse:
        await node.suspend(InstanceId(instance_id), body.target)
        return _message("suspending")

    @app.post(paths.VM_ACTION.replace("{action}", "migrate"))
    async def migrate(_: Authorized, instance_id: int, body: s.MigrateIn) -> JsonResponse:
        stats = await node.migrate(InstanceId(instance_id), convert.ticket(body.ticket))
        return JsonResponse(convert.transfer_wire(stats).model_dump())

    @app.post(paths.VM_ACTION.replace("{action}", "finishIncoming"))
    async def finish_incoming(_: Authorized, instance_id: int) -> JsonResponse:
        out = await node.finish_incoming(InstanceId(instance_id))
        return JsonResponse(convert.vm_status_wire(out).model_dump())

    @app.post(paths.VM_ACTION.replace("{action}", "call"))
    async def call(_: Authorized, instance_id: int, body: s.VmmCallIn) -> JsonResponse:
        return _message(await node.call(InstanceId(instance_id), body.op, body.arg))

    @app.post(paths.VM_ACTION.replace("{action}", "cpuShare"))
    async def cpu_share(_: Authorized, instance_id: int, body: s.CpuShareIn) -> JsonResponse:
        await node.set_cpu_share(InstanceId(instance_id), body.share)
        return _message(f"cpu share set to {body.share}")

    return app
