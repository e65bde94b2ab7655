"""New AMIs and their removal: RegisterImage and DeregisterImage, onto the image store.

``RegisterImage`` makes the image ``Name`` in the store as a clone (a qcow2 overlay backed by its
source, ``cloneImage``) of the image its ``ImageLocation`` names (a store image's file name or
AMI id), and answers once it exists; its AMI id follows from its name (``ids.image_id``).
Registering from a snapshot (``BlockDeviceMappings``' ``SnapshotId``) is refused
(``InvalidParameterCombination``) until Tashi has snapshots. ``DeregisterImage`` is
``removeImage``: administrators only (the store's images are the site's), refused while an
instance or another image uses it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from tashi.domain.errors import Forbidden, InvalidState, NotFound
from tashi.domain.models import Principal
from tashi.frontends.ec2 import ids
from tashi.frontends.ec2.actions.images import by_id
from tashi.frontends.ec2.context import Ec2Context, Handler, Params, Result
from tashi.frontends.ec2.errors import Ec2Error
from tashi.images.operations import Op

#: AWS's rule for AMI names: 3-128 of letters, digits, ( ) [ ] space . / - ' @ _
_NAME = re.compile(r"[A-Za-z0-9()\[\] ./\-'@_]{3,128}")


async def register_image(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    name = params["Name"]
    if not _NAME.fullmatch(name) or "/" in name or name.startswith("."):
        raise Ec2Error(
            "InvalidAMIName.Malformed",
            f"AMI name '{name}' is invalid: 3 to 128 letters, digits and ( ) [ ] . - ' @ _"
            " (no '/', not starting with '.')",
        )
    for mapping in params.get("BlockDeviceMappings") or []:
        if (mapping.get("Ebs") or {}).get("SnapshotId"):
            raise Ec2Error(
                "InvalidParameterCombination",
                "Registering an image from a snapshot is not supported by Tashi: give"
                " ImageLocation, an image of the store.",
            )
    location = params.get("ImageLocation")
    if not location:
        raise Ec2Error("MissingParameter", "The request must contain the parameter ImageLocation")
    source = (await by_id(ctx, caller, location)).name if location.startswith("ami-") else location
    known = {i.name for i in await ctx.service.images.list(caller)}
    if name in known:
        raise Ec2Error("InvalidAMIName.Duplicate", f"AMI name {name} is already in use")
    if source not in known:
        raise Ec2Error(
            "InvalidParameterValue", f"Invalid ImageLocation: there is no image '{source}'"
        )
    image = await ctx.service.images.make(caller, Op.clone, source, name)
    return {"ImageId": ids.image_id(image.name)}


async def deregister_image(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    image = await by_id(ctx, caller, params["ImageId"])
    try:
        await ctx.service.images.remove(caller, image.name)
    except Forbidden as exc:
        raise Ec2Error("UnauthorizedOperation", exc.message) from exc
    except InvalidState as exc:
        raise Ec2Error("InvalidAMIID.Unavailable", exc.message) from exc
    except NotFound as exc:
        raise Ec2Error("InvalidAMIID.NotFound", exc.message) from exc
    await ctx.service.tags.forget_image(image.name)
    return {"Return": True}


HANDLERS: Mapping[str, Handler] = {
    "RegisterImage": register_image,
    "DeregisterImage": deregister_image,
}
