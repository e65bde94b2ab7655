"""What the EC2 API launched an instance with: its reservation, image, type, zone, key pair,
client token, user data and tags, kept on the instance as Tashi's own hints (``__ec2.*``).

They are the instance's record, saved with it in the unit that creates it and removed with it:
no second table to keep in step, and nothing the user can set through ``--hints`` (names
starting ``__`` are refused there). ``Launch.hints`` writes them, ``Launch.of`` reads them back;
an instance made with ``createVm`` has none (``of`` answers ``None``) and the EC2 API shows it
with defaults.

EC2's names for Tashi's own ids are here too (``instance_id``, ``image_id``, ``account``), so that
the EC2 front-end and the node manager's instance metadata (``nodemanager/metadata``) agree on
them without one importing the other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

PREFIX = "__ec2."
TAG_PREFIX = "__ec2.tag."
TYPE = f"{PREFIX}type"
USER_DATA = f"{PREFIX}userdata"
NO_TERMINATE = f"{PREFIX}noterminate"
#: the account of what no user owns (the images an administrator put in the store)
SITE_ACCOUNT = "000000000000"


def instance_id(iid: int) -> str:
    """An instance's EC2 id: ``i-`` and its Tashi id in 17 hexadecimal digits."""
    return f"i-{iid:017x}"


def image_id(name: str) -> str:
    """An image's EC2 id: ``ami-`` and 17 hexadecimal digits of the SHA-256 of its file name."""
    return "ami-" + hashlib.sha256(name.encode()).hexdigest()[:17]


def account(user_id: int | None) -> str:
    """A user's account id: their Tashi id in 12 digits (``SITE_ACCOUNT`` for no user)."""
    return SITE_ACCOUNT if user_id is None else f"{int(user_id):012d}"


@dataclass(frozen=True, slots=True)
class Launch:
    reservation: str  # r-… shared by the instances of one RunInstances
    image: str  # ami-…
    instance_type: str
    zone: str
    key_name: str | None = None
    client_token: str | None = None
    user_data: str | None = None  # base64, as sent
    public_key: str | None = None  # the key pair's public key (OpenSSH), as it was at launch
    no_terminate: bool = False  # disableApiTermination: TerminateInstances refuses it
    tags: Mapping[str, str] = field(default_factory=dict)

    def hints(self) -> dict[str, str]:
        out = {
            f"{PREFIX}reservation": self.reservation,
            f"{PREFIX}image": self.image,
            f"{PREFIX}type": self.instance_type,
            f"{PREFIX}zone": self.zone,
        }
        for name, value in (
            ("key", self.key_name),
            ("token", self.client_token),
            ("userdata", self.user_data),
            ("pubkey", self.public_key),
        ):
            if value is not None:
                out[f"{PREFIX}{name}"] = value
        if self.no_terminate:
            out[NO_TERMINATE] = "true"
        out.update({TAG_PREFIX + k: v for k, v in self.tags.items()})
        return out

    @classmethod
    def of(cls, hints: Mapping[str, str]) -> Launch | None:
        """The launch recorded in ``hints``; ``None`` for an instance not launched by EC2."""
        reservation = hints.get(f"{PREFIX}reservation")
        if reservation is None:
            return None
        return cls(
            reservation=reservation,
            image=hints.get(f"{PREFIX}image", ""),
            instance_type=hints.get(f"{PREFIX}type", ""),
            zone=hints.get(f"{PREFIX}zone", ""),
            key_name=hints.get(f"{PREFIX}key"),
            client_token=hints.get(f"{PREFIX}token"),
            user_data=hints.get(f"{PREFIX}userdata"),
            public_key=hints.get(f"{PREFIX}pubkey"),
            no_terminate=hints.get(NO_TERMINATE) == "true",
            tags=tags(hints),
        )


def carried(hints: Mapping[str, str]) -> dict[str, str]:
    """The launch hints without their prefix: what the node contract carries to the node
    manager that runs the instance (``InstanceWire.launch``), for its guest's metadata."""
    return {k[len(PREFIX) :]: v for k, v in hints.items() if k.startswith(PREFIX)}


def restored(carried: Mapping[str, str]) -> dict[str, str]:
    """``carried``'s hints as the cluster manager keeps them (on the node manager's side)."""
    return {PREFIX + k: v for k, v in carried.items()}


def tags(hints: Mapping[str, str]) -> dict[str, str]:
    """An instance's tags (any instance may have them: CreateTags)."""
    return {k[len(TAG_PREFIX) :]: v for k, v in hints.items() if k.startswith(TAG_PREFIX)}
