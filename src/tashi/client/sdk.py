"""The synchronous facade of the one API client, for the CLI and scripts: ``TashiClient``.

Every method runs the method of the same name of ``tashi.apiclient.ApiClient`` (async: the one
client of the cluster manager's API, with its one error mapping) on the client loop of
``blocking.py`` and returns its result: the wire models of ``api/schemas.py``, or the
``TashiError`` category the cluster manager raised. References (``ref``) are ids or names; the
server resolves them. The CLI (``cli.py``, ``verbs/``) is one user of this class; the devcluster,
tests, benchmarks and scripts are others::

    with TashiClient("http://cm:9882", username="alice", password="...") as tashi:
        vm = tashi.create_vm(InstanceIn(name="web", disks=[DiskIn(uri="debian.qcow2")]))
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Unpack

from tashi.api.schemas import (
    AccessKeyOut,
    AddressOut,
    BatchResultOut,
    CreateManyIn,
    HealthOut,
    HostIn,
    HostOut,
    ImageOut,
    ImageTaskOut,
    InstanceEventOut,
    InstanceIn,
    InstanceOut,
    MessageOut,
    NetworkIn,
    NetworkOut,
    ReservationOut,
    TokenOut,
    UserIn,
    UserOut,
)
from tashi.apiclient.client import IMAGE_OPS, ApiClient, InstanceFilters, base_url
from tashi.apiclient.connection import Options
from tashi.client.blocking import run
from tashi.config import Settings

__all__ = ["IMAGE_OPS", "TashiClient", "base_url"]


class TashiClient:
    """A synchronous client of one cluster manager. Close it (or use ``with``) when done.
    ``options``: credentials, timeouts, transport (``tashi.apiclient.connection.Options``)."""

    def __init__(self, base_url: str, **options: Unpack[Options]) -> None:
        self.api = ApiClient(base_url, **options)

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
        return self.api.base_url

    def close(self) -> None:
        run(self.api.close())

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
        return run(self.api.login())

    def logout(self) -> None:
        """Revoke the bearer token in use."""
        run(self.api.logout())

    def whoami(self) -> UserOut:
        return run(self.api.whoami())

    def health(self) -> HealthOut:
        return run(self.api.health())

    # --- instances --------------------------------------------------------------------------

    def get_instances(self, **filters: Unpack[InstanceFilters]) -> list[InstanceOut]:
        """``getInstances``: a user sees their own; admins see all. Filters are ANDed;
        ``after``/``limit`` page through the list in id order."""
        return run(self.api.get_instances(**filters))

    def all_instances(self, **filters: Unpack[InstanceFilters]) -> list[InstanceOut]:
        """Every instance ``get_instances`` would give, read page by page."""
        return run(self.api.all_instances(**filters))

    def get_instance(self, ref: str | int) -> InstanceOut:
        return run(self.api.get_instance(ref))

    def create_vm(self, request: InstanceIn) -> InstanceOut:
        """``createVm``: the instance is stored Pending; the scheduler places it."""
        return run(self.api.create_vm(request))

    def create_many(self, request: CreateManyIn) -> list[InstanceOut]:
        """``createMany``: ``count`` instances named ``basename-NN``, all or none."""
        return run(self.api.create_many(request))

    def destroy_vm(self, ref: str | int, *, force: bool = False) -> InstanceOut | None:
        """``destroyVm``: the instance as it now is (Destroying), or ``None`` once removed."""
        return run(self.api.destroy_vm(ref, force=force))

    def destroy_many(self, basename: str) -> BatchResultOut:
        return run(self.api.destroy_many(basename))

    def shutdown_many(self, basename: str) -> BatchResultOut:
        return run(self.api.shutdown_many(basename))

    def get_instance_history(
        self, ref: str | int, limit: int = 100, after: int | None = None
    ) -> list[InstanceEventOut]:
        """What happened to an instance, oldest first (admins: also a removed one, by id): its
        newest ``limit`` events, or with ``after`` the ``limit`` that follow that event id."""
        return run(self.api.get_instance_history(ref, limit, after))

    def all_instance_history(self, ref: str | int) -> list[InstanceEventOut]:
        """Every event of an instance's history, oldest first, read page by page."""
        return run(self.api.all_instance_history(ref))

    def adapt_cpu_share(self, ref: str | int, share: int) -> InstanceOut:
        return run(self.api.adapt_cpu_share(ref, share))

    def shutdown_vm(self, ref: str | int) -> InstanceOut:
        return run(self.api.shutdown_vm(ref))

    def pause_vm(self, ref: str | int) -> InstanceOut:
        return run(self.api.pause_vm(ref))

    def unpause_vm(self, ref: str | int) -> InstanceOut:
        return run(self.api.unpause_vm(ref))

    def suspend_vm(self, ref: str | int) -> InstanceOut:
        return run(self.api.suspend_vm(ref))

    def resume_vm(self, ref: str | int) -> InstanceOut:
        return run(self.api.resume_vm(ref))

    def migrate_vm(self, ref: str | int, target_host: str | int) -> InstanceOut:
        return run(self.api.migrate_vm(ref, target_host))

    def activate_vm(self, ref: str | int, host: str | int) -> InstanceOut:
        """The scheduler's call: start a Pending instance on ``host``."""
        return run(self.api.activate_vm(ref, host))

    def activate_group(self, placements: list[tuple[str | int, str | int]]) -> list[InstanceOut]:
        """The scheduler's call for a group (ADR 0009): ``(instance, host)`` for every member;
        all are placed in one transaction and started, or none is placed."""
        return run(self.api.activate_group(placements))

    def hold_vm(self, ref: str | int, reason: str) -> InstanceOut:
        """The scheduler's call: a Pending instance it cannot place now becomes Held with
        ``reason`` (shown in getInstances); a Held one keeps Held with the new reason."""
        return run(self.api.hold_vm(ref, reason))

    def vmm_specific_call(self, ref: str | int, arg: str) -> MessageOut:
        return run(self.api.vmm_specific_call(ref, arg))

    def get_addresses(self, after: int | None = None, limit: int | None = None) -> list[AddressOut]:
        """The addresses handed out (agents and admins); ``after``/``limit``: a page by
        instance."""
        return run(self.api.get_addresses(after, limit))

    def all_addresses(self) -> list[AddressOut]:
        """Every address handed out, read page by page."""
        return run(self.api.all_addresses())

    # --- hosts ------------------------------------------------------------------------------

    def get_hosts(self, after: int | None = None, limit: int | None = None) -> list[HostOut]:
        """``getHosts``: the hosts in id order; ``after``/``limit`` give one page of them."""
        return run(self.api.get_hosts(after, limit))

    def all_hosts(self) -> list[HostOut]:
        """Every host, read page by page."""
        return run(self.api.all_hosts())

    def get_host(self, ref: str | int) -> HostOut:
        return run(self.api.get_host(ref))

    def register_host(self, request: HostIn) -> HostOut:
        return run(self.api.register_host(request))

    def unregister_host(self, ref: str | int) -> HostOut:
        """Remove a host's record; the host as it was."""
        return run(self.api.unregister_host(ref))

    def set_host_state(self, ref: str | int, state: str) -> HostOut:
        return run(self.api.set_host_state(ref, state))

    def set_host_notes(self, ref: str | int, notes: str) -> HostOut:
        return run(self.api.set_host_notes(ref, notes))

    def set_host_config(self, ref: str | int, config: Mapping[str, str]) -> HostOut:
        """SLA@SOI ``setHostConfig``: set elements; an empty value removes one."""
        return run(self.api.set_host_config(ref, config))

    def get_reservation(self, ref: str | int) -> ReservationOut:
        return run(self.api.get_reservation(ref))

    def add_reservation(self, ref: str | int, user: str | int) -> HostOut:
        """Reserve the host for ``user`` too; the host with its ``reserved`` user ids."""
        return run(self.api.add_reservation(ref, user))

    def del_reservation(self, ref: str | int, user: str | int) -> HostOut:
        return run(self.api.del_reservation(ref, user))

    # --- networks, users, images ------------------------------------------------------------

    def get_networks(self, after: int | None = None, limit: int | None = None) -> list[NetworkOut]:
        """``getNetworks``: the networks in id order; ``after``/``limit`` give one page."""
        return run(self.api.get_networks(after, limit))

    def all_networks(self) -> list[NetworkOut]:
        """Every network, read page by page."""
        return run(self.api.all_networks())

    def add_network(self, request: NetworkIn) -> NetworkOut:
        return run(self.api.add_network(request))

    def del_network(self, ref: str | int) -> NetworkOut:
        """Remove a network no instance uses; the network as it was."""
        return run(self.api.del_network(ref))

    def get_users(self, after: int | None = None, limit: int | None = None) -> list[UserOut]:
        """``getUsers``: the users (a user: themselves) in id order; ``after``/``limit`` give
        one page."""
        return run(self.api.get_users(after, limit))

    def all_users(self) -> list[UserOut]:
        """Every user the caller may see, read page by page."""
        return run(self.api.all_users())

    def get_user(self, ref: str | int) -> UserOut:
        return run(self.api.get_user(ref))

    def register_user(self, request: UserIn) -> UserOut:
        return run(self.api.register_user(request))

    def unregister_user(self, ref: str | int) -> UserOut:
        """Remove a user (and revoke their tokens); the user as it was."""
        return run(self.api.unregister_user(ref))

    def create_access_key(self, user: str | None = None) -> AccessKeyOut:
        return run(self.api.create_access_key(user))

    def list_access_keys(
        self, user: str | None = None, after: str | None = None, limit: int | None = None
    ) -> list[AccessKeyOut]:
        """Your access keys, or (admins) ``user``'s, oldest first; ``after``/``limit``: a page."""
        return run(self.api.list_access_keys(user, after, limit))

    def all_access_keys(self, user: str | None = None) -> list[AccessKeyOut]:
        """Every key ``list_access_keys`` would give, read page by page."""
        return run(self.api.all_access_keys(user))

    def delete_access_key(self, key_id: str) -> AccessKeyOut:
        return run(self.api.delete_access_key(key_id))

    def get_images(self, after: int | None = None, limit: int | None = None) -> list[ImageOut]:
        """``getImages``: the images in name order, numbered; ``after``/``limit``: one page."""
        return run(self.api.get_images(after, limit))

    def all_images(self) -> list[ImageOut]:
        """Every image, read page by page."""
        return run(self.api.all_images())

    def remove_image(self, name: str) -> ImageOut:
        """``removeImage`` (admin): the image as it was; its direct-boot files go too."""
        return run(self.api.remove_image(name))

    # --- image operations ---------------------------------------------------------------------

    def start_image_task(self, op: str, src: str, dst: str) -> ImageTaskOut:
        """Ask for image ``dst`` made from ``src`` (``op``: copy, clone or rebase); the task,
        queued or running. Refusals raise at once; the work goes on in the cluster manager."""
        return run(self.api.start_image_task(op, src, dst))

    def copy_image(self, src: str, dst: str, *, wait: bool = True) -> ImageTaskOut:
        """``copyImage``: ``dst`` gets the same bytes (and direct-boot files) as ``src``."""
        return run(self.api.image_task("copy", src, dst, wait=wait))

    def clone_image(self, src: str, dst: str, *, wait: bool = True) -> ImageTaskOut:
        """``cloneImage``: ``dst`` is a qcow2 overlay whose backing file is ``src``."""
        return run(self.api.image_task("clone", src, dst, wait=wait))

    def rebase_image(self, src: str, dst: str, *, wait: bool = True) -> ImageTaskOut:
        """``rebaseImage``: ``dst`` is ``src`` flattened into a standalone qcow2."""
        return run(self.api.image_task("rebase", src, dst, wait=wait))

    def get_image_task(self, task_id: int) -> ImageTaskOut:
        return run(self.api.get_image_task(task_id))

    def get_image_tasks(self) -> list[ImageTaskOut]:
        """Your image tasks (an admin's: everyone's), running and recently ended."""
        return run(self.api.get_image_tasks())

    def wait_image_task(self, task_id: int, *, timeout: float | None = None) -> ImageTaskOut:
        """Poll until the task ends; the done task, or its error raised as its category.
        ``timeout`` (seconds, ``None``: as long as it takes) raises ``Unavailable``; the task
        goes on in the cluster manager either way."""
        return run(self.api.wait_image_task(task_id, timeout=timeout))
