"""``Guest``: what the metadata service tells one NIC of one VM, made from its instance.

An instance launched by the EC2 API carries its launch (``tashi.domain.launches.Launch``: image,
type, zone, key, user data) in its hints; one made with ``createVm`` has none, and gets the
answers EC2 would give an instance of its image and size: its first disk's image as ``ami-id``,
the instance type of its size in ``[InstanceTypes]`` (or ``tashi.custom``), the region's first
zone, and the user data of its hint ``userData`` (base64, as EC2 takes it; at most 1024
characters, a hint's limit). Nothing here comes from the guest: a ``Guest`` is chosen by the tap a
request came in on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from tashi.domain import launches
from tashi.domain.models import Instance

CUSTOM_TYPE = "tashi.custom"  # the type of a createVm instance whose size no type has
USER_DATA_HINT = "userData"  # a createVm instance's user data (base64)


@dataclass(frozen=True, slots=True)
class Site:
    """What the host knows of the cluster: ``[Ec2] region`` and ``zones``, and the instance
    types (name -> (cores, memory MB))."""

    region: str = "tashi-1"
    zone: str = "tashi-1a"  # the default zone (the first of [Ec2] zones)
    types: Mapping[str, tuple[int, int]] | None = None

    def type_of(self, cores: int, memory: int) -> str:
        for name, size in sorted((self.types or {}).items()):
            if size == (cores, memory):
                return name
        return CUSTOM_TYPE


@dataclass(frozen=True, slots=True)
class Guest:
    instance: Instance
    nic_index: int
    site: Site
    since: datetime  # when this host took the VM on (the identity document's pendingTime)

    @property
    def launch(self) -> launches.Launch | None:
        return launches.Launch.of(self.instance.hints)

    @property
    def user_data(self) -> str | None:
        """The user data in base64, as given (``RunInstances``, or the ``userData`` hint)."""
        if self.launch is not None:
            return self.launch.user_data
        return self.instance.hints.get(USER_DATA_HINT) or None

    @property
    def instance_id(self) -> str:
        return launches.instance_id(self.instance.id)

    @property
    def image_id(self) -> str:
        if self.launch is not None and self.launch.image:
            return self.launch.image
        disks = self.instance.disks
        return launches.image_id(disks[0].uri) if disks else launches.image_id("")

    @property
    def instance_type(self) -> str:
        if self.launch is not None and self.launch.instance_type:
            return self.launch.instance_type
        return self.site.type_of(self.instance.cores, self.instance.memory)

    @property
    def zone(self) -> str:
        return self.launch.zone if self.launch is not None and self.launch.zone else self.site.zone

    @property
    def reservation(self) -> str:
        if self.launch is not None:
            return self.launch.reservation
        return f"r-{int(self.instance.id):017x}"  # one instance, one "reservation"

    @property
    def mac(self) -> str:
        """The primary NIC's MAC, as EC2's ``mac`` is eth0's."""
        return self.instance.nics[0].mac.lower() if self.instance.nics else ""

    @property
    def address(self) -> str | None:
        """The primary NIC's address, when the cluster assigned one (DhcpDns)."""
        return self.instance.nics[0].ip if self.instance.nics else None
