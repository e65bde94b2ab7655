"""Images: the image store's files as AMIs (``DescribeImages``).

Every image in the store is an AMI anyone may launch, owned by the site's account
(``ids.SITE_ACCOUNT``), its id derived from its file name (``ids.image_id``). The root device
of an instance is its first disk, ``/dev/vda``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tashi.domain.models import Image, Principal
from tashi.frontends.ec2 import ids
from tashi.frontends.ec2.context import Ec2Context, Handler, Params, Result
from tashi.frontends.ec2.errors import Ec2Error
from tashi.frontends.ec2.filters import compile_filters, page_answer

ROOT_DEVICE = "/dev/vda"
GIB = 2**30
_FILTERS = (
    "image-id",
    "name",
    "state",
    "owner-id",
    "owner-alias",
    "architecture",
    "is-public",
    "image-type",
    "root-device-type",
    "virtualization-type",
    "hypervisor",
    "platform-details",
)


async def by_id(ctx: Ec2Context, caller: Principal, image: str) -> Image:
    """The store's image that ``image`` (an AMI id) names; ``InvalidAMIID.NotFound``."""
    ids.check_image(image)
    for found in await ctx.service.images.list(caller):
        if ids.image_id(found.name) == image:
            return found
    raise Ec2Error("InvalidAMIID.NotFound", f"The image id '[{image}]' does not exist")


def _size_gib(image: Image) -> int:
    size = image.virtual_size or image.size
    return max(1, -(-size // GIB))


def render(image: Image, tags: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "ImageId": ids.image_id(image.name),
        "ImageLocation": image.name,
        "Name": image.name,
        "Description": f"{image.name} ({image.format}) from the image store",
        "State": "available",
        "OwnerId": ids.account(image.owner),
        "Public": image.public,
        "Architecture": "x86_64",
        "ImageType": "machine",
        "RootDeviceType": "ebs",
        "RootDeviceName": ROOT_DEVICE,
        "VirtualizationType": "hvm",
        "Hypervisor": "xen",
        "PlatformDetails": "Linux/UNIX",
        "UsageOperation": "RunInstances",
        "EnaSupport": False,
        "CreationDate": datetime.fromtimestamp(0, UTC).isoformat().replace("+00:00", ".000Z"),
        "BlockDeviceMappings": [
            {
                "DeviceName": ROOT_DEVICE,
                "Ebs": {
                    "VolumeSize": _size_gib(image),
                    "DeleteOnTermination": True,
                    "VolumeType": "standard",
                    "Encrypted": False,
                },
            }
        ],
        "Tags": [{"Key": k, "Value": v} for k, v in sorted((tags or {}).items())],
    }


def _values(image: Image) -> dict[str, list[str]]:
    return {
        "image-id": [ids.image_id(image.name)],
        "name": [image.name],
        "state": ["available"],
        "owner-id": [ids.account(image.owner)],
        "owner-alias": [],
        "architecture": ["x86_64"],
        "is-public": ["true" if image.public else "false"],
        "image-type": ["machine"],
        "root-device-type": ["ebs"],
        "virtualization-type": ["hvm"],
        "hypervisor": ["xen"],
        "platform-details": ["Linux/UNIX"],
    }


def _owned(image: Image, owners: list[str], caller: Principal) -> bool:
    if not owners:
        return True
    accounts = {ids.account(caller.user_id) if o == "self" else o for o in owners}
    return ids.account(image.owner) in accounts


async def describe_images(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    wanted = [ids.check_image(i) for i in params.get("ImageIds") or []]
    owners = list(params.get("Owners") or [])
    matches = compile_filters(params.get("Filters"), _FILTERS, "DescribeImages")
    images = sorted(await ctx.service.images.list(caller), key=lambda i: ids.image_id(i.name))
    known = {ids.image_id(i.name) for i in images}
    missing = [i for i in wanted if i not in known]
    if missing:
        raise Ec2Error(
            "InvalidAMIID.NotFound", f"The image id '[{', '.join(missing)}]' does not exist"
        )
    chosen = [
        i
        for i in images
        if (not wanted or ids.image_id(i.name) in wanted)
        and _owned(i, owners, caller)
        and matches(_values(i))
    ]
    tagged = await ctx.service.tags.of_images()
    return page_answer(
        "Images",
        chosen,
        lambda i: ids.image_id(i.name),
        params,
        listing="images",
        render=lambda shown: [render(i, tagged.get(i.name)) for i in shown],
    )


HANDLERS: Mapping[str, Handler] = {"DescribeImages": describe_images}
