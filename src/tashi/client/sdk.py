"""The typed Python SDK of the cluster manager's API: one method per operation of ``api/paths.py``.

``TashiClient`` speaks the wire contract (``tashi.api``) through ``transport.Transport`` and
returns the wire models of ``api/schemas.py``. Errors arrive as ``TashiError`` categories, the
same classes the cluster manager raised. References (``ref``) are ids or names; the server
resolves them. The CLI (``cli.py``, ``verbs/``) is one user of this class; scripts are another::

    with TashiClient("http://cm:9882", username="alice", password="...") as tashi:
        vm = tashi.create_vm(InstanceIn(name="web", disks=[DiskIn(uri="debian.qcow2")]))
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from urllib.parse import quote

import httpx

from tashi.api import paths
from tashi.api.schemas import (
    ActivateIn,
    BatchResultOut,
    BatchSelectIn,
    CreateManyIn,
    HealthOut,
    HostConfigIn,
    HostIn,
    HostNotesIn,
    HostOut,
    HostStateIn,
    ImageOut,
    InstanceIn,
    InstanceOut,
    MessageOut,
    MigrateIn,
    NetworkIn,
    NetworkOut,
    ReservationOut,
    TokenOut,
    UserIn,
    UserOut,
    VmmCallIn,
)
from tashi.client.transport import Transport, decode, decode_list
from tashi.config import Settings


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

    def _act(
        self, ref: str | int, action: str, body: MigrateIn | ActivateIn | None = None
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
