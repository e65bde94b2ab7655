"""Routes for NIC addresses (the DHCP/DNS hook's allocations; agents and admins only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from tashi.api import paths
from tashi.api import schemas as s
from tashi.clustermanager.service import ClusterService
from tashi.domain.ids import InstanceId
from tashi.frontends.rest.deps import BODY, CONFLICT, REF, ROLE, After, Caller, Limit, may_fail
from tashi.web.json import JsonResponse


def router(service: ClusterService) -> APIRouter:
    api = APIRouter(tags=["addresses"])
    addresses = service.addresses

    @api.post(
        paths.NIC_ADDRESS,
        response_model=s.NicAddressOut,
        summary="allocate (agent)",
        # 409: the range has no free address left
        responses=may_fail(REF, BODY, ROLE, CONFLICT),
    )
    async def allocate(caller: Caller, ref: str, index: int, body: s.NicAddressIn) -> JsonResponse:
        inst, nic_index = await addresses.allocate(caller, ref, index, body.range)
        nic = inst.nics[nic_index]
        return JsonResponse(
            {
                "instanceId": inst.id,
                "index": nic_index,
                "network": nic.network,
                "mac": nic.mac,
                "ip": nic.ip,
            }
        )

    @api.get(
        paths.ADDRESSES,
        response_model=list[s.AddressOut],
        summary="list (agent)",
        responses=may_fail(400, ROLE),
    )
    async def list_addresses(
        caller: Caller,
        network: Annotated[s.Int | None, Query()] = None,
        after: After = None,
        limit: Limit = None,
    ) -> JsonResponse:
        """``after``/``limit`` page by instance: the addresses of at most ``limit`` instances
        whose id is greater than ``after`` (a page never splits an instance's NICs)."""
        marker = None if after is None else InstanceId(after)
        return JsonResponse(
            [
                {
                    "network": a.network_id,
                    "ip": a.ip,
                    "instanceId": a.instance_id,
                    "nicIndex": a.nic_index,
                }
                for a in await addresses.list(caller, network, after=marker, limit=limit)
            ]
        )

    return api
