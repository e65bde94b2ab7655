"""The OCCI front-end's section ``[OCCI]`` (docs/occi.md): its listener, its TLS, and what a
compute that names no template gets. Its ``resource_tpl`` mixins are the ``[InstanceTypes]``
table (``config/ec2.py``), shared with the EC2 API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tashi.config.options import option


@dataclass(frozen=True, slots=True)
class OcciSettings:
    SECTION: ClassVar[str] = "OCCI"
    DOC: ClassVar[str] = (
        "The OCCI 1.2 API (docs/occi.md): compute, network and storage with the text and JSON"
        " renderings, for a Tashi user's name and password (HTTP Basic) or login token."
        " Served by the cluster manager."
    )

    enabled: bool = option("enabled", True, "Serve the OCCI API.")
    host: str = option(
        "host",
        "",
        "Address the OCCI API listens on; empty: the one of [ClusterManagerService] host.",
    )
    port: int = option("port", 8787, "TCP port of the OCCI API.", minimum=1, maximum=65535)
    cert_file: str = option(
        "certFile",
        "",
        "PEM certificate of the OCCI API's TLS; empty: plain HTTP. With keyFile.",
    )
    key_file: str = option("keyFile", "", "PEM private key of certFile.")
    default_image: str = option(
        "defaultImage",
        "",
        "The image (os_tpl) of a compute created without one; empty: the image store's one"
        " image when it has exactly one (root disks of instances aside), else such a create"
        " is refused.",
    )
    default_resource_tpl: str = option(
        "defaultResourceTpl",
        "tashi.tiny",
        "The instance type (resource_tpl) of a compute that names neither one nor cores and"
        " memory; one of [InstanceTypes].",
    )
