"""EC2's ids for Tashi's things, both ways.

* an instance is ``i-`` and its Tashi id in 17 hexadecimal digits (``i-0000000000000002a`` is
  instance 42): the two never disagree, and sorting ids sorts instances by age;
* a reservation (one ``RunInstances``) is ``r-`` and 17 random hexadecimal digits;
* an image of the store is ``ami-`` and the first 17 hexadecimal digits of the SHA-256 of its
  file name: the same name has the same id everywhere, for as long as it exists;
* a user's account is their Tashi id in 12 digits, as AWS's account ids are.

A malformed id is refused with the ``.Malformed`` code AWS uses for its kind.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from tashi.domain.ids import INT_MAX, InstanceId
from tashi.domain.launches import SITE_ACCOUNT, account, image_id, instance_id
from tashi.frontends.ec2.errors import Ec2Error

# instance_id, image_id and account live in the domain: the node manager's metadata uses them too.
__all__ = [
    "SITE_ACCOUNT",
    "account",
    "check_image",
    "image_id",
    "instance_id",
    "new_reservation",
    "parse_instance",
    "token_reservation",
]

_INSTANCE = re.compile(r"i-([0-9a-f]{8}|[0-9a-f]{17})")
_IMAGE = re.compile(r"ami-([0-9a-f]{8}|[0-9a-f]{17})")


def parse_instance(text: str) -> InstanceId:
    match = _INSTANCE.fullmatch(text)
    if match is None:
        raise Ec2Error("InvalidInstanceID.Malformed", f'Invalid id: "{text}"')
    number = int(match.group(1), 16)
    if number > INT_MAX or number == 0:
        raise Ec2Error("InvalidInstanceID.NotFound", f"The instance ID '{text}' does not exist")
    return InstanceId(number)


def new_reservation() -> str:
    return f"r-{secrets.token_hex(9)[:17]}"


def token_reservation(user_id: int, token: str) -> str:
    """The reservation of a user's RunInstances with a ClientToken: fixed by the two (17
    hexadecimal digits of their SHA-256), so that a retry finds the first launch by its
    instances' names, which are the reservation's (an indexed query)."""
    digest = hashlib.sha256(f"{int(user_id)}\n{token}".encode()).hexdigest()
    return f"r-{digest[:17]}"


def check_image(text: str) -> str:
    if _IMAGE.fullmatch(text) is None:
        raise Ec2Error("InvalidAMIID.Malformed", f'Invalid id: "{text}" (expecting "ami-...")')
    return text
