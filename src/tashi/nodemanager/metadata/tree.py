"""What a guest reads: its ``meta-data/`` tree, its user data and its identity document, as EC2's
instance metadata service gives them (pure functions of a ``Guest``).

The tree is nested dictionaries: a name maps to a leaf's text or to a directory. A listing is
the names, one a line, a directory's with a trailing ``/``; ``public-keys/`` lists ``0=<key
name>`` as EC2 does, and ``public-keys/0/`` holds ``openssh-key``. Only what Tashi knows is
there: no ``local-ipv4`` without an address, no ``public-keys/`` without a key pair, no
``security-groups`` for an instance in none.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Union

from tashi.domain import launches
from tashi.domain.secgroups import named_groups_of
from tashi.nodemanager.metadata.guests import Guest

Tree = dict[str, Union[str, "Tree"]]

#: the identity document's ``version``, as EC2 writes it
DOCUMENT_VERSION = "2017-09-30"


def meta_data(guest: Guest) -> Tree:
    """The ``meta-data/`` directory of ``guest``."""
    name = guest.instance.name
    tree: Tree = {
        "ami-id": guest.image_id,
        "ami-launch-index": "0",
        "hostname": name,
        "instance-action": "none",
        "instance-id": guest.instance_id,
        "instance-type": guest.instance_type,
        "local-hostname": name,
        "mac": guest.mac,
        "placement": {"availability-zone": guest.zone, "region": guest.site.region},
        "reservation-id": guest.reservation,
    }
    if guest.address:
        tree["local-ipv4"] = guest.address
    groups = named_groups_of(guest.instance.hints)
    if groups:  # names, one a line (a group a ``securityGroups`` hint names: its id)
        tree["security-groups"] = "\n".join(group or ref for ref, group in groups)
    launch = guest.launch
    if launch is not None and launch.key_name:
        key = (launch.public_key or "").strip()
        tree["public-keys"] = {f"0={launch.key_name}": {"openssh-key": key + "\n" if key else ""}}
    return tree


def user_data(guest: Guest) -> bytes | None:
    """The user data as given to ``RunInstances`` or in the ``userData`` hint (decoded),
    ``None`` without any."""
    encoded = guest.user_data
    if not encoded:
        return None
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        # The EC2 API checked it at launch (a hint is not): what does not decode is served as is.
        return encoded.encode()


def identity_document(guest: Guest) -> str:
    """``dynamic/instance-identity/document``: JSON with EC2's fields (cloud-init reads its
    ``region`` and ``instanceId``)."""
    document = {
        "accountId": launches.account(guest.instance.user_id),
        "architecture": "x86_64",
        "availabilityZone": guest.zone,
        "billingProducts": None,
        "devpayProductCodes": None,
        "marketplaceProductCodes": None,
        "imageId": guest.image_id,
        "instanceId": guest.instance_id,
        "instanceType": guest.instance_type,
        "kernelId": None,
        "pendingTime": guest.since.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "privateIp": guest.address,
        "ramdiskId": None,
        "region": guest.site.region,
        "version": DOCUMENT_VERSION,
    }
    return json.dumps(document, indent=2, separators=(",", " : "))


def root(guest: Guest) -> Tree:
    """One version's directory (``latest/``, ``2009-04-04/`` …): what is under it."""
    tree: Tree = {
        "dynamic": {"instance-identity": {"document": identity_document(guest)}},
        "meta-data": meta_data(guest),
    }
    data = user_data(guest)
    if data is not None:
        tree["user-data"] = ""  # listed; its bytes are served by ``answers`` (they may be binary)
    return tree


def listing(directory: Tree) -> str:
    """A directory as EC2 lists it: a name a line, directories with a trailing ``/``; a key
    listed as ``0=name`` is reached as ``0/``."""
    lines = []
    for name, entry in directory.items():
        if isinstance(entry, dict) and "=" not in name:
            lines.append(name + "/")
        else:
            lines.append(name)
    return "\n".join(lines)


def find(directory: Tree, parts: list[str]) -> str | Tree | None:
    """The entry at ``parts`` below ``directory``; ``public-keys/0`` finds ``0=<name>``."""
    entry: str | Tree = directory
    for part in parts:
        if not isinstance(entry, dict):
            return None
        found = entry.get(part)
        if found is None:
            found = next((v for k, v in entry.items() if k.split("=", 1)[0] == part), None)
        if found is None:
            return None
        entry = found
    return entry
