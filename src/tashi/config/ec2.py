"""The EC2 front-end's sections: ``[Ec2]`` (its listener, region and zones) and
``[InstanceTypes]`` (the table of instance types, shared with the front-ends to come).

``[InstanceTypes]`` is a table, not a list of fixed options: every line ``name = cores,
memoryMB`` is a type; the shipped lines (``domain/instancetypes.DEFAULTS``) are there unless a
site file changes them. ``config/loader.py`` fills ``entries`` from the shipped table and the
section's lines; the cluster manager checks each line at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tashi.config.options import option
from tashi.domain.instancetypes import DEFAULTS


@dataclass(frozen=True, slots=True)
class Ec2Settings:
    SECTION: ClassVar[str] = "Ec2"
    DOC: ClassVar[str] = (
        "The EC2 Query API (docs/ec2.md): boto3 and the AWS CLI drive Tashi with it, signing"
        " with an access key made by 'tashi createAccessKey'. Served by the cluster manager."
    )

    enabled: bool = option("enabled", True, "Serve the EC2 API.")
    host: str = option(
        "host",
        "",
        "Address the EC2 API listens on; empty: the one of [ClusterManagerService] host.",
    )
    port: int = option("port", 8773, "TCP port of the EC2 API.", minimum=1, maximum=65535)
    region: str = option(
        "region",
        "tashi-1",
        "The region name this cluster is: clients sign requests for it (aws --region).",
    )
    zones: str = option(
        "zones",
        "tashi-1a",
        "Availability zones of the region, separated by commas (the first is the default).",
    )
    default_instance_type: str = option(
        "defaultInstanceType",
        "t3.micro",
        "The instance type of a RunInstances that names none; one of [InstanceTypes].",
    )


@dataclass(frozen=True, slots=True)
class InstanceTypesSettings:
    SECTION: ClassVar[str] = "InstanceTypes"
    DOC: ClassVar[str] = (
        "Instance types, one per line: name = cores, memory in MB. A site adds its own lines or"
        " changes these (in Tashi.cfg or ClusterManager.cfg)."
    )
    #: the shipped lines; ``entries`` holds them with the site's on top
    TABLE: ClassVar[dict[str, str]] = dict(DEFAULTS)

    entries: tuple[tuple[str, str], ...] = tuple(DEFAULTS.items())
