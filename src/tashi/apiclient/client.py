"""The one client of the cluster manager's API: one async method per operation of ``api/paths.py``.

``ApiClient`` speaks the wire contract (``tashi.api``) through ``connection.Connection`` and
returns the wire models of ``api/schemas.py``. Errors arrive as ``TashiError`` categories, the
same classes the cluster manager raised (``errors.py`` decodes them, once for every user).
References (``ref``) are ids or names; the server resolves them. Its users: the ``tashi`` CLI
through the synchronous facade ``tashi.client.sdk.TashiClient``, the scheduling agent
(``tashi.scheduler``), the DHCP/DNS hook, the benchmarks, and scripts::

    async with ApiClient("http://cm:9882", username="alice", password="...") as tashi:
        vm = await tashi.create_vm(InstanceIn(name="web", disks=[DiskIn(uri="debian.qcow2")]))
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import TypedDict, TypeVar, Unpack
from urllib.parse import quote

import httpx

from tashi.api import paths
from tashi.api.schemas import (
    AccessKeyIn,
    AccessKeyOut,
    ActivateGroupIn,
    ActivateIn,
    AddressOut,
    BatchResultOut,
    BatchSelectIn,
    ChangesOut,
    CpuShareIn,
    CreateManyIn,
    HealthOut,
    HoldIn,
    HostConfigIn,
    HostIn,
    HostNotesIn,
    HostOut,
    HostStateIn,
    ImageOpIn,
    ImageOut,
    ImageTaskOut,
    InstanceEventOut,
    InstanceIn,
    InstanceOut,
    MessageOut,
    MigrateIn,
    NetworkIn,
    NetworkOut,
    NicAddressIn,
    NicAddressOut,
    PlacementIn,
    ReservationOut,
    TokenOut,
    UserIn,
    UserOut,
    VmmCallIn,
)
from tashi.apiclient.connection import Connection, Options
from tashi.apiclient.errors import decode, decode_list, error_of, json_of
from tashi.domain.errors import InvalidInput, Unavailable

IMAGE_OPS = ("copy", "clone", "rebase")

#: how many items ``all_instances``, ``all_hosts``, … read per request (read at each call, so a
#: test may make it small)
PAGE = 5000

_Item = TypeVar("_Item")
_Marker = TypeVar("_Marker", int, str)


async def every_page(
    fetch: Callable[[_Marker | None, int], Awaitable[list[_Item]]],
    marker: Callable[[_Item], _Marker],
) -> list[_Item]:
    """Every item of a paged list: ``fetch(after, limit)`` is one page of a list endpoint (its
    ``after`` and ``limit`` parameters), called with the ``marker`` (the id) of the last item
    of the page before until a page comes back short."""
    out: list[_Item] = []
    after: _Marker | None = None
    size = PAGE
    while True:
        page = await fetch(after, size)
        out.extend(page)
        if len(page) < size:
            return out
        after = marker(page[-1])


def _paging(after: int | None, limit: int | None) -> dict[str, str]:
    """The query parameters of one page (none: the whole list)."""
    given = {"after": after, "limit": limit}
    return {k: str(v) for k, v in given.items() if v is not None}


# activateGroup answers once every member's VM has started, so its wait grows with the group:
# a group of 100 on ten busy virtual hosts took longer than one activation's 30 s, the scheduler
# gave up on the whole group while its VMs were starting, and held its members.
GROUP_SECONDS_PER_MEMBER = 1.0

#: how often ``wait_image_task`` asks: quickly at first (a clone takes milliseconds), then calmly
_POLL_FIRST, _POLL_MAX = 0.05, 1.0


class InstanceFilters(TypedDict, total=False):
    """``getInstances``' filters (``None``: not filtered on)."""

    user: str | None
    state: str | None
    host: str | None
    name: str | None
    after: int | None
    limit: int | None


_InstanceBody = MigrateIn | ActivateIn | CpuShareIn | HoldIn | None


def _ref(ref: str | int) -> str:
    """One path segment: an id or a name, escaped so a name cannot change the route."""
    return quote(str(ref), safe="")


def base_url(host: str, port: int) -> str:
    """``http://host:port``, with an IPv6 address in brackets."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}"


class ApiClient:
    """An asynchronous client of one cluster manager. Close it (or use ``async with``) when
    done. ``options``: credentials, timeouts, transport (``connection.Options``)."""

    def __init__(self, base_url: str = "", **options: Unpack[Options]) -> None:
        self._c = Connection(base_url, **options)

    @property
    def base_url(self) -> str:
        return self._c.base_url

    @property
    def http(self) -> httpx.AsyncClient:
        """The authenticated ``httpx.AsyncClient`` underneath (what scheduler hooks are given)."""
        return self._c.http

    async def close(self) -> None:
        await self._c.close()

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.close()

    # --- authentication -------------------------------------------------------------------

    async def login(self) -> TokenOut:
        """Log in with the user name and password now (otherwise done at the first call)."""
        return await self._c.login()

    async def logout(self) -> None:
        """Revoke the bearer token in use."""
        await self._c.call("DELETE", paths.TOKEN)
        self._c.token = None

    async def whoami(self) -> UserOut:
        if self._c.session is not None:
            return self._c.session.user
        return decode(UserOut, await self._c.call("GET", paths.WHOAMI))

    async def health(self) -> HealthOut:
        return decode(HealthOut, await self._c.call("GET", paths.HEALTH, auth=False))

    # --- instances --------------------------------------------------------------------------

    async def get_instances(self, **filters: Unpack[InstanceFilters]) -> list[InstanceOut]:
        """``getInstances``: a user sees their own; admins see all. Filters are ANDed;
        ``after``/``limit`` page through the list in id order."""
        params = {k: str(v) for k, v in filters.items() if v is not None}
        return decode_list(InstanceOut, await self._c.call("GET", paths.INSTANCES, params=params))

    async def all_instances(self, **filters: Unpack[InstanceFilters]) -> list[InstanceOut]:
        """Every instance the caller may see (that matches ``filters``), read in pages of
        ``PAGE`` by id."""

        async def page(after: int | None, limit: int) -> list[InstanceOut]:
            chosen = filters.copy()
            chosen["after"], chosen["limit"] = after, limit
            return await self.get_instances(**chosen)

        return await every_page(page, lambda i: i.id)

    async def get_instance(self, ref: str | int) -> InstanceOut:
        path = paths.INSTANCE.format(ref=_ref(ref))
        return decode(InstanceOut, await self._c.call("GET", path))

    async def create_vm(self, request: InstanceIn) -> InstanceOut:
        """``createVm``: the instance is stored Pending; the scheduler places it."""
        return decode(InstanceOut, await self._c.call("POST", paths.INSTANCES, body=request))

    async def create_many(self, request: CreateManyIn) -> list[InstanceOut]:
        """``createMany``: ``count`` instances named ``basename-NN``, all or none."""
        reply = await self._c.call("POST", paths.CREATE_MANY, body=request)
        return decode_list(InstanceOut, reply)

    async def destroy_vm(self, ref: str | int, *, force: bool = False) -> InstanceOut | None:
        """``destroyVm``: the instance as it now is (Destroying), or ``None`` once removed."""
        params = {"force": "true"} if force else None
        path = paths.INSTANCE.format(ref=_ref(ref))
        reply = await self._c.call("DELETE", path, params=params)
        data = json_of(reply) if reply.content else None
        removed = isinstance(data, dict) and "id" not in data  # {"message": "removed"}
        return None if removed or data is None else decode(InstanceOut, reply)

    async def destroy_many(self, basename: str) -> BatchResultOut:
        body = BatchSelectIn(basename=basename)
        return decode(BatchResultOut, await self._c.call("POST", paths.DESTROY_MANY, body=body))

    async def shutdown_many(self, basename: str) -> BatchResultOut:
        body = BatchSelectIn(basename=basename)
        return decode(BatchResultOut, await self._c.call("POST", paths.SHUTDOWN_MANY, body=body))

    async def get_instance_history(
        self, ref: str | int, limit: int = 100, after: int | None = None
    ) -> list[InstanceEventOut]:
        """What happened to an instance, oldest first (admins: also a removed one, by id): its
        newest ``limit`` events, or with ``after`` the ``limit`` that follow that event id."""
        path = paths.INSTANCE_HISTORY.format(ref=_ref(ref))
        reply = await self._c.call("GET", path, params=_paging(after, limit))
        return decode_list(InstanceEventOut, reply)

    async def all_instance_history(self, ref: str | int) -> list[InstanceEventOut]:
        """Every event of an instance's history, oldest first, read in pages of ``PAGE``."""

        async def page(after: int | None, limit: int) -> list[InstanceEventOut]:
            return await self.get_instance_history(ref, limit, 0 if after is None else after)

        return await every_page(page, lambda e: e.id)

    async def changes(self, after: int, timeout: float) -> ChangesOut:
        """The agents' change feed: answers once its version differs from ``after``, or after
        ``timeout`` seconds with the same version (a long poll)."""
        params = {"after": max(after, 0), "timeout": max(timeout, 0.0)}
        wait = timeout + self._c.timeout
        reply = await self._c.call("GET", paths.INSTANCE_CHANGES, params=params, timeout=wait)
        return decode(ChangesOut, reply)

    async def _act(self, ref: str | int, action: str, body: _InstanceBody = None) -> InstanceOut:
        path = paths.INSTANCE_ACTION.format(ref=_ref(ref), action=action)
        return decode(InstanceOut, await self._c.call("POST", path, body=body))

    async def adapt_cpu_share(self, ref: str | int, share: int) -> InstanceOut:
        return await self._act(ref, "cpuShare", CpuShareIn(share=share))

    async def shutdown_vm(self, ref: str | int) -> InstanceOut:
        return await self._act(ref, "shutdown")

    async def pause_vm(self, ref: str | int) -> InstanceOut:
        return await self._act(ref, "pause")

    async def unpause_vm(self, ref: str | int) -> InstanceOut:
        return await self._act(ref, "unpause")

    async def suspend_vm(self, ref: str | int) -> InstanceOut:
        return await self._act(ref, "suspend")

    async def resume_vm(self, ref: str | int) -> InstanceOut:
        return await self._act(ref, "resume")

    async def migrate_vm(self, ref: str | int, target_host: str | int) -> InstanceOut:
        return await self._act(ref, "migrate", MigrateIn(targetHost=str(target_host)))

    async def activate_vm(self, ref: str | int, host: str | int) -> InstanceOut:
        """The scheduler's call: start a Pending instance on ``host``."""
        return await self._act(ref, "activate", ActivateIn(host=str(host)))

    async def activate_group(
        self, placements: list[tuple[str | int, str | int]]
    ) -> list[InstanceOut]:
        """The scheduler's call for a group (ADR 0009): ``(instance, host)`` for every member;
        all are placed in one transaction and started, or none is placed. It waits
        ``GROUP_SECONDS_PER_MEMBER`` longer for every member."""
        body = ActivateGroupIn(
            placements=[PlacementIn(instance=str(i), host=str(h)) for i, h in placements]
        )
        wait = self._c.timeout + GROUP_SECONDS_PER_MEMBER * len(placements)
        reply = await self._c.call("POST", paths.ACTIVATE_GROUP, body=body, timeout=wait)
        return decode_list(InstanceOut, reply)

    async def hold_vm(self, ref: str | int, reason: str) -> InstanceOut:
        """The scheduler's call: a Pending instance it cannot place now becomes Held with
        ``reason`` (shown in getInstances); a Held one keeps Held with the new reason."""
        return await self._act(ref, "hold", HoldIn(reason=reason))

    async def vmm_specific_call(self, ref: str | int, arg: str) -> MessageOut:
        path = paths.INSTANCE_ACTION.format(ref=_ref(ref), action="vmmSpecificCall")
        return decode(MessageOut, await self._c.call("POST", path, body=VmmCallIn(arg=arg)))

    # --- addresses (the DHCP/DNS hook's) -----------------------------------------------------

    async def allocate_address(self, ref: str | int, index: int, ip_range: str) -> NicAddressOut:
        """NIC ``index``'s address from ``ip_range`` (``first-last``); the same one again on a
        retry. Agents and admins only."""
        path = paths.NIC_ADDRESS.format(ref=_ref(ref), index=index)
        reply = await self._c.call("POST", path, body=NicAddressIn(range=ip_range))
        return decode(NicAddressOut, reply)

    async def get_addresses(
        self, after: int | None = None, limit: int | None = None
    ) -> list[AddressOut]:
        """The addresses the cluster manager has handed out (agents and admins), by instance;
        ``after``/``limit`` give a page by instance: the addresses of at most ``limit``
        instances whose id is greater than ``after``."""
        params = _paging(after, limit)
        return decode_list(AddressOut, await self._c.call("GET", paths.ADDRESSES, params=params))

    async def all_addresses(self) -> list[AddressOut]:
        """Every address handed out, read in pages of ``PAGE`` instances."""
        return await every_page(self.get_addresses, lambda a: a.instanceId)

    # --- hosts ------------------------------------------------------------------------------

    async def get_hosts(self, after: int | None = None, limit: int | None = None) -> list[HostOut]:
        """``getHosts``: the hosts in id order; ``after``/``limit`` give one page of them."""
        params = _paging(after, limit)
        return decode_list(HostOut, await self._c.call("GET", paths.HOSTS, params=params))

    async def all_hosts(self) -> list[HostOut]:
        """Every host, read in pages of ``PAGE`` by id."""
        return await every_page(self.get_hosts, lambda h: h.id)

    async def get_host(self, ref: str | int) -> HostOut:
        return decode(HostOut, await self._c.call("GET", paths.HOST.format(ref=_ref(ref))))

    async def register_host(self, request: HostIn) -> HostOut:
        return decode(HostOut, await self._c.call("POST", paths.HOSTS, body=request))

    async def unregister_host(self, ref: str | int) -> HostOut:
        """Remove a host's record; the host as it was."""
        return decode(HostOut, await self._c.call("DELETE", paths.HOST.format(ref=_ref(ref))))

    async def set_host_state(self, ref: str | int, state: str) -> HostOut:
        path = paths.HOST_STATE.format(ref=_ref(ref))
        return decode(HostOut, await self._c.call("PUT", path, body=HostStateIn(state=state)))

    async def set_host_notes(self, ref: str | int, notes: str) -> HostOut:
        path = paths.HOST_NOTES.format(ref=_ref(ref))
        return decode(HostOut, await self._c.call("PUT", path, body=HostNotesIn(notes=notes)))

    async def set_host_config(self, ref: str | int, config: Mapping[str, str]) -> HostOut:
        """SLA@SOI ``setHostConfig``: set elements; an empty value removes one."""
        path = paths.HOST_CONFIG.format(ref=_ref(ref))
        body = HostConfigIn(config=dict(config))
        return decode(HostOut, await self._c.call("PATCH", path, body=body))

    async def get_reservation(self, ref: str | int) -> ReservationOut:
        path = paths.RESERVATIONS.format(ref=_ref(ref))
        return decode(ReservationOut, await self._c.call("GET", path))

    async def add_reservation(self, ref: str | int, user: str | int) -> HostOut:
        """Reserve the host for ``user`` too; the host with its ``reserved`` user ids."""
        path = paths.RESERVATION.format(ref=_ref(ref), user=_ref(user))
        return decode(HostOut, await self._c.call("PUT", path))

    async def del_reservation(self, ref: str | int, user: str | int) -> HostOut:
        path = paths.RESERVATION.format(ref=_ref(ref), user=_ref(user))
        return decode(HostOut, await self._c.call("DELETE", path))

    # --- networks, users, images ------------------------------------------------------------

    async def get_networks(
        self, after: int | None = None, limit: int | None = None
    ) -> list[NetworkOut]:
        """``getNetworks``: the networks in id order; ``after``/``limit`` give one page."""
        params = _paging(after, limit)
        return decode_list(NetworkOut, await self._c.call("GET", paths.NETWORKS, params=params))

    async def all_networks(self) -> list[NetworkOut]:
        """Every network, read in pages of ``PAGE`` by id."""
        return await every_page(self.get_networks, lambda n: n.id)

    async def add_network(self, request: NetworkIn) -> NetworkOut:
        return decode(NetworkOut, await self._c.call("POST", paths.NETWORKS, body=request))

    async def del_network(self, ref: str | int) -> NetworkOut:
        """Remove a network no instance uses; the network as it was."""
        path = paths.NETWORK.format(ref=_ref(ref))
        return decode(NetworkOut, await self._c.call("DELETE", path))

    async def get_users(self, after: int | None = None, limit: int | None = None) -> list[UserOut]:
        """``getUsers``: the users (a user: themselves) in id order; ``after``/``limit`` give
        one page."""
        params = _paging(after, limit)
        return decode_list(UserOut, await self._c.call("GET", paths.USERS, params=params))

    async def all_users(self) -> list[UserOut]:
        """Every user the caller may see, read in pages of ``PAGE`` by id."""
        return await every_page(self.get_users, lambda u: u.id)

    async def get_user(self, ref: str | int) -> UserOut:
        return decode(UserOut, await self._c.call("GET", paths.USER.format(ref=_ref(ref))))

    async def register_user(self, request: UserIn) -> UserOut:
        return decode(UserOut, await self._c.call("POST", paths.USERS, body=request))

    async def unregister_user(self, ref: str | int) -> UserOut:
        """Remove a user (and revoke their tokens); the user as it was."""
        return decode(UserOut, await self._c.call("DELETE", paths.USER.format(ref=_ref(ref))))

    async def create_access_key(self, user: str | None = None) -> AccessKeyOut:
        """A new EC2 access key (for ``user``: admins only); the answer holds its secret, the
        one time it is told."""
        body = AccessKeyIn(user=user)
        return decode(AccessKeyOut, await self._c.call("POST", paths.ACCESS_KEYS, body=body))

    async def list_access_keys(
        self, user: str | None = None, after: str | None = None, limit: int | None = None
    ) -> list[AccessKeyOut]:
        """Your access keys, or (admins) ``user``'s; ``"*"``: everyone's; oldest first.
        ``after`` (the key id of the last key of the page before) and ``limit``: one page."""
        given = {"user": user, "after": after, "limit": limit}
        params = {k: str(v) for k, v in given.items() if v is not None}
        reply = await self._c.call("GET", paths.ACCESS_KEYS, params=params)
        return decode_list(AccessKeyOut, reply)

    async def all_access_keys(self, user: str | None = None) -> list[AccessKeyOut]:
        """Every key ``list_access_keys`` would give, read in pages of ``PAGE``."""

        async def page(after: str | None, limit: int) -> list[AccessKeyOut]:
            return await self.list_access_keys(user, after, limit)

        return await every_page(page, lambda k: k.accessKeyId)

    async def delete_access_key(self, key_id: str) -> AccessKeyOut:
        path = paths.ACCESS_KEY.format(key=_ref(key_id))
        return decode(AccessKeyOut, await self._c.call("DELETE", path))

    async def get_images(
        self, after: int | None = None, limit: int | None = None
    ) -> list[ImageOut]:
        """``getImages``: the images in name order, numbered; ``after``/``limit`` give one
        page."""
        params = _paging(after, limit)
        return decode_list(ImageOut, await self._c.call("GET", paths.IMAGES, params=params))

    async def all_images(self) -> list[ImageOut]:
        """Every image, read in pages of ``PAGE``."""
        return await every_page(self.get_images, lambda i: i.id)

    async def remove_image(self, name: str) -> ImageOut:
        """``removeImage`` (admin): the image as it was; its direct-boot files go too."""
        path = paths.IMAGE.format(name=_ref(name))
        return decode(ImageOut, await self._c.call("DELETE", path))

    # --- image operations ---------------------------------------------------------------------

    async def start_image_task(self, op: str, src: str, dst: str) -> ImageTaskOut:
        """Ask for image ``dst`` made from ``src`` (``op``: copy, clone or rebase); the task,
        queued or running. Refusals raise at once; the work goes on in the cluster manager."""
        if op not in IMAGE_OPS:
            raise InvalidInput(f"{op!r} is not an image operation; one of {', '.join(IMAGE_OPS)}")
        body = ImageOpIn(op=op, src=src, dst=dst)
        return decode(ImageTaskOut, await self._c.call("POST", paths.IMAGES, body=body))

    async def image_task(self, op: str, src: str, dst: str, *, wait: bool = True) -> ImageTaskOut:
        """``copyImage``, ``cloneImage``, ``rebaseImage`` (``op``): the task, ended when
        ``wait``."""
        task = await self.start_image_task(op, src, dst)
        return await self.wait_image_task(task.id) if wait else task

    async def get_image_task(self, task_id: int) -> ImageTaskOut:
        path = paths.IMAGE_TASK.format(task=task_id)
        return decode(ImageTaskOut, await self._c.call("GET", path))

    async def get_image_tasks(self) -> list[ImageTaskOut]:
        """Your image tasks (an admin's: everyone's), running and recently ended."""
        return decode_list(ImageTaskOut, await self._c.call("GET", paths.IMAGE_TASKS))

    async def wait_image_task(self, task_id: int, *, timeout: float | None = None) -> ImageTaskOut:
        """Poll until the task ends; the done task, or its error raised as its category.
        ``timeout`` (seconds, ``None``: as long as it takes) raises ``Unavailable``; the task
        goes on in the cluster manager either way."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = _POLL_FIRST
        while True:
            task = await self.get_image_task(task_id)
            if task.state == "done":
                return task
            if task.state == "failed":
                error = task.error
                if error is None:
                    raise Unavailable(f"image task {task_id} failed without saying why")
                raise error_of(error)
            if deadline is not None and time.monotonic() + pause > deadline:
                raise Unavailable(
                    f"image task {task_id} ({task.op} {task.src} to {task.dst}) is still"
                    f" {task.state} after {timeout} s; it goes on in the cluster manager"
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, _POLL_MAX)
