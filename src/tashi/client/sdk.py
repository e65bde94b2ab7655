"""The typed Python SDK of the cluster manager's API: one method per operation of ``api/paths.py``.

``TashiClient`` speaks the wire contract (``tashi.api``) through ``transport.Transport`` and
returns the wire models of ``api/schemas.py``. Errors arrive as ``TashiError`` categories, the
same classes the cluster manager raised. References (``ref``) are ids or names; the server
resolves them. The CLI (``cli.py``, ``verbs/``) is one user of this class; scripts are another::

    with TashiClient("http://cm:9882", username="alice", password="...") as tashi:
        vm = tashi.create_vm(InstanceIn(name="web", disks=[DiskIn(uri="debian.qcow2")]))
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import TracebackType
from urllib.parse import quote

import httpx

from tashi.api import paths
from tashi.api.schemas import (
    ActivateGroupIn,
    ActivateIn,
    BatchResultOut,
    BatchSelectIn,
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
    PlacementIn,
    ReservationOut,
    TokenOut,
    UserIn,
    UserOut,
    VmmCallIn,
)
from tashi.client.transport import Transport, decode, decode_list
from tashi.config import Settings
from tashi.domain.errors import InvalidInput, Unavailable, error_class

IMAGE_OPS = ("copy", "clone", "rebase")

#: how often ``wait_image_task`` asks: quickly at first (a clone takes milliseconds), then calmly
_POLL_FIRST, _POLL_MAX = 0.05, 1.0


def _ref(ref: str | int) -> str:
    """One path segment: an id or a name, escaped so a name cannot change the route."""
    return quote(str(ref), safe="")


def base_url(host: str, port: int) -> str:
    """``http://host:port``, with an IPv6 address in brackets."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}"


class TashiClient:
    """A synchronous client of one cluster manager. Close it (or use ``with``) when done."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._t = Transport(
            base_url,
            token=token,
            username=username,
            password=password,
            timeout=timeout,
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> TashiClient:
        """From ``[Client]`` and ``[AccessClusterManager]`` (``load_settings("Client")``)."""
        access = settings.access_cluster_manager
        return cls(
            base_url(settings.client.cluster_manager_host, settings.client.cluster_manager_port),
            token=access.token or None,
            username=access.username or None,
            password=access.password or None,
            timeout=settings.client.cluster_manager_timeout,
        )

    @property
    def base_url(self) -> str:
        return self._t.base_url

    def close(self) -> None:
        self._t.close()

    def __enter__(self) -> TashiClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    # --- authentication -------------------------------------------------------------------

    def login(self) -> TokenOut:
        """Log in with the user name and password now (otherwise done at the first call)."""
        return self._t.login()

    def logout(self) -> None:
        """Revoke the bearer token in use."""
        self._t.call("DELETE", paths.TOKEN)
        self._t.token = None

    def whoami(self) -> UserOut:
        if self._t.session is not None:
            return self._t.session.user
        return decode(UserOut, self._t.call("GET", paths.WHOAMI))

    def health(self) -> HealthOut:
        return decode(HealthOut, self._t.call("GET", paths.HEALTH, auth=False))

    # --- instances --------------------------------------------------------------------------

    def get_instances(
        self,
        *,
        user: str | None = None,
        state: str | None = None,
        host: str | None = None,
        name: str | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> list[InstanceOut]:
        """``getInstances``: a user sees their own; admins see all. Filters are ANDed;
        ``after``/``limit`` page through the list in id order."""
        wanted = {"user": user, "state": state, "host": host, "name": name, "after": after}
        wanted["limit"] = limit
        params = {k: str(v) for k, v in wanted.items() if v is not None}
        return decode_list(InstanceOut, self._t.call("GET", paths.INSTANCES, params=params))

    def get_instance(self, ref: str | int) -> InstanceOut:
        path = paths.INSTANCE.format(ref=_ref(ref))
        return decode(InstanceOut, self._t.call("GET", path))

    def create_vm(self, request: InstanceIn) -> InstanceOut:
        """``createVm``: the instance is stored Pending; the scheduler places it."""
        return decode(InstanceOut, self._t.call("POST", paths.INSTANCES, body=request))

    def create_many(self, request: CreateManyIn) -> list[InstanceOut]:
        """``createMany``: ``count`` instances named ``basename-NN``, all or none."""
        return decode_list(InstanceOut, self._t.call("POST", paths.CREATE_MANY, body=request))

    def destroy_vm(self, ref: str | int, *, force: bool = False) -> InstanceOut | None:
        """``destroyVm``: the instance as it now is (Destroying), or ``None`` once removed."""
        params = {"force": "true"} if force else None
        path = paths.INSTANCE.format(ref=_ref(ref))
        data = self._t.call("DELETE", path, params=params)
        removed = isinstance(data, dict) and "id" not in data  # {"message": "removed"}
        return None if removed or data is None else decode(InstanceOut, data)

    def destroy_many(self, basename: str) -> BatchResultOut:
        body = BatchSelectIn(basename=basename)
        return decode(BatchResultOut, self._t.call("POST", paths.DESTROY_MANY, body=body))

    def shutdown_many(self, basename: str) -> BatchResultOut:
        body = BatchSelectIn(basename=basename)
        return decode(BatchResultOut, self._t.call("POST", paths.SHUTDOWN_MANY, body=body))

    def get_instance_history(self, ref: str | int, limit: int = 100) -> list[InstanceEventOut]:
        """What happened to an instance, oldest first (admins: also a removed one, by id)."""
        path = paths.INSTANCE_HISTORY.format(ref=_ref(ref))
        return decode_list(
            InstanceEventOut, self._t.call("GET", path, params={"limit": str(limit)})
        )

    def adapt_cpu_share(self, ref: str | int, share: int) -> InstanceOut:
        return self._act(ref, "cpuShare", CpuShareIn(share=share))

    def _act(
        self,
        ref: str | int,
        action: str,
        body: MigrateIn | ActivateIn | CpuShareIn | HoldIn | None = None,
    ) -> InstanceOut:
        path = paths.INSTANCE_ACTION.format(ref=_ref(ref), action=action)
        return decode(InstanceOut, self._t.call("POST", path, body=body))

    def shutdown_vm(self, ref: str | int) -> InstanceOut:
        return self._act(ref, "shutdown")

    def pause_vm(self, ref: str | int) -> InstanceOut:
        return self._act(ref, "pause")

    def unpause_vm(self, ref: str | int) -> InstanceOut:
        return self._act(ref, "unpause")

    def suspend_vm(self, ref: str | int) -> InstanceOut:
        return self._act(ref, "suspend")

    def resume_vm(self, ref: str | int) -> InstanceOut:
        return self._act(ref, "resume")

    def migrate_vm(self, ref: str | int, target_host: str | int) -> InstanceOut:
        return self._act(ref, "migrate", MigrateIn(targetHost=str(target_host)))

    def activate_vm(self, ref: str | int, host: str | int) -> InstanceOut:
        """The scheduler's call: start a Pending instance on ``host``."""
        return self._act(ref, "activate", ActivateIn(host=str(host)))

    def activate_group(self, placements: list[tuple[str | int, str | int]]) -> list[InstanceOut]:
        """The scheduler's call for a group (ADR 0009): ``(instance, host)`` for every member;
        all are placed in one transaction and started, or none is placed."""
        body = ActivateGroupIn(
            placements=[PlacementIn(instance=str(i), host=str(h)) for i, h in placements]
        )
        return decode_list(InstanceOut, self._t.call("POST", paths.ACTIVATE_GROUP, body=body))

    def hold_vm(self, ref: str | int, reason: str) -> InstanceOut:
        """The scheduler's call: a Pending instance it cannot place now becomes Held with
        ``reason`` (shown in getInstances); a Held one keeps Held with the new reason."""
        return self._act(ref, "hold", HoldIn(reason=reason))

    def vmm_specific_call(self, ref: str | int, arg: str) -> MessageOut:
        path = paths.INSTANCE_ACTION.format(ref=_ref(ref), action="vmmSpecificCall")
        return decode(MessageOut, self._t.call("POST", path, body=VmmCallIn(arg=arg)))

    # --- hosts ------------------------------------------------------------------------------

    def get_hosts(self) -> list[HostOut]:
        return decode_list(HostOut, self._t.call("GET", paths.HOSTS))

    def get_host(self, ref: str | int) -> HostOut:
        return decode(HostOut, self._t.call("GET", paths.HOST.format(ref=_ref(ref))))

    def register_host(self, request: HostIn) -> HostOut:
        return decode(HostOut, self._t.call("POST", paths.HOSTS, body=request))

    def unregister_host(self, ref: str | int) -> HostOut:
        """Remove a host's record; the host as it was."""
        return decode(HostOut, self._t.call("DELETE", paths.HOST.format(ref=_ref(ref))))

    def set_host_state(self, ref: str | int, state: str) -> HostOut:
        path = paths.HOST_STATE.format(ref=_ref(ref))
        return decode(HostOut, self._t.call("PUT", path, body=HostStateIn(state=state)))

    def set_host_notes(self, ref: str | int, notes: str) -> HostOut:
        path = paths.HOST_NOTES.format(ref=_ref(ref))
        return decode(HostOut, self._t.call("PUT", path, body=HostNotesIn(notes=notes)))

    def set_host_config(self, ref: str | int, config: Mapping[str, str]) -> HostOut:
        """SLA@SOI ``setHostConfig``: set elements; an empty value removes one."""
        path = paths.HOST_CONFIG.format(ref=_ref(ref))
        body = HostConfigIn(config=dict(config))
        return decode(HostOut, self._t.call("PATCH", path, body=body))

    def get_reservation(self, ref: str | int) -> ReservationOut:
        path = paths.RESERVATIONS.format(ref=_ref(ref))
        return decode(ReservationOut, self._t.call("GET", path))

    def add_reservation(self, ref: str | int, user: str | int) -> HostOut:
        """Reserve the host for ``user`` too; the host with its ``reserved`` user ids."""
        path = paths.RESERVATION.format(ref=_ref(ref), user=_ref(user))
        return decode(HostOut, self._t.call("PUT", path))

    def del_reservation(self, ref: str | int, user: str | int) -> HostOut:
        path = paths.RESERVATION.format(ref=_ref(ref), user=_ref(user))
        return decode(HostOut, self._t.call("DELETE", path))

    # --- networks, users, images ------------------------------------------------------------

    def get_networks(self) -> list[NetworkOut]:
        return decode_list(NetworkOut, self._t.call("GET", paths.NETWORKS))

    def add_network(self, request: NetworkIn) -> NetworkOut:
        return decode(NetworkOut, self._t.call("POST", paths.NETWORKS, body=request))

    def del_network(self, ref: str | int) -> NetworkOut:
        """Remove a network no instance uses; the network as it was."""
        return decode(NetworkOut, self._t.call("DELETE", paths.NETWORK.format(ref=_ref(ref))))

    def get_users(self) -> list[UserOut]:
        return decode_list(UserOut, self._t.call("GET", paths.USERS))

    def get_user(self, ref: str | int) -> UserOut:
        return decode(UserOut, self._t.call("GET", paths.USER.format(ref=_ref(ref))))

    def register_user(self, request: UserIn) -> UserOut:
        return decode(UserOut, self._t.call("POST", paths.USERS, body=request))

    def unregister_user(self, ref: str | int) -> UserOut:
        """Remove a user (and revoke their tokens); the user as it was."""
        return decode(UserOut, self._t.call("DELETE", paths.USER.format(ref=_ref(ref))))

    def get_images(self) -> list[ImageOut]:
        return decode_list(ImageOut, self._t.call("GET", paths.IMAGES))

    # --- image operations ---------------------------------------------------------------------

    def start_image_task(self, op: str, src: str, dst: str) -> ImageTaskOut:
        """Ask for image ``dst`` made from ``src`` (``op``: copy, clone or rebase); the task,
        queued or running. Refusals raise at once; the work goes on in the cluster manager."""
        if op not in IMAGE_OPS:
            raise InvalidInput(f"{op!r} is not an image operation; one of {', '.join(IMAGE_OPS)}")
        body = ImageOpIn(op=op, src=src, dst=dst)
        return decode(ImageTaskOut, self._t.call("POST", paths.IMAGES, body=body))

    def copy_image(self, src: str, dst: str, *, wait: bool = True) -> ImageTaskOut:
        """``copyImage``: ``dst`` gets the same bytes (and direct-boot files) as ``src``."""
        return self._image_task("copy", src, dst, wait)

    def clone_image(self, src: str, dst: str, *, wait: bool = True) -> ImageTaskOut:
        """``cloneImage``: ``dst`` is a qcow2 overlay whose backing file is ``src``."""
        return self._image_task("clone", src, dst, wait)

    def rebase_image(self, src: str, dst: str, *, wait: bool = True) -> ImageTaskOut:
        """``rebaseImage``: ``dst`` is ``src`` flattened into a standalone qcow2."""
        return self._image_task("rebase", src, dst, wait)

    def _image_task(self, op: str, src: str, dst: str, wait: bool) -> ImageTaskOut:
        task = self.start_image_task(op, src, dst)
        return self.wait_image_task(task.id) if wait else task

    def get_image_task(self, task_id: int) -> ImageTaskOut:
        path = paths.IMAGE_TASK.format(task=task_id)
        return decode(ImageTaskOut, self._t.call("GET", path))

    def get_image_tasks(self) -> list[ImageTaskOut]:
        """Your image tasks (an admin's: everyone's), running and recently ended."""
        return decode_list(ImageTaskOut, self._t.call("GET", paths.IMAGE_TASKS))

    def wait_image_task(self, task_id: int, *, timeout: float | None = None) -> ImageTaskOut:
        """Poll until the task ends; the done task, or its error raised as its category.
        ``timeout`` (seconds, ``None``: as long as it takes) raises ``Unavailable``; the task
        goes on in the cluster manager either way."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = _POLL_FIRST
        while True:
            task = self.get_image_task(task_id)
            if task.state == "done":
                return task
            if task.state == "failed":
                error = task.error
                if error is None:
                    raise Unavailable(f"image task {task_id} failed without saying why")
                raise error_class(error.code)(error.message)
            if deadline is not None and time.monotonic() + pause > deadline:
                raise Unavailable(
                    f"image task {task_id} ({task.op} {task.src} to {task.dst}) is still"
                    f" {task.state} after {timeout} s; it goes on in the cluster manager"
                )
            time.sleep(pause)
            pause = min(pause * 2, _POLL_MAX)

    def remove_image(self, name: str) -> ImageOut:
        """``removeImage`` (admin): the image as it was; its direct-boot files go too."""
        path = paths.IMAGE.format(name=_ref(name))
        return decode(ImageOut, self._t.call("DELETE", path))
