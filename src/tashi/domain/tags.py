"""Tags: a user's key-value labels on their instances, key pairs, volumes, snapshots, and
(administrators') images, with EC2's rules (``CreateTags``, ``DeleteTags``, ``DescribeTags``).

Where they are kept depends on the resource, and ``clustermanager/tags.py`` hides it:

* an instance's tags are its ``__ec2.tag.*`` hints (``launches.TAG_PREFIX``), saved with the
  instance by compare-and-swap;
* a key pair's, a volume's, a snapshot's and a security group's are rows beside it
  (``tx.key_pair_tags``, ``tx.volume_tags``, ``tx.snapshot_tags``, ``tx.security_group_tags``),
  which go with it;
* an image is a file of the image store, not a record: its tags are rows by its name
  (``tx.image_tags``).

The rules are AWS's: at most 50 tags a resource, a key of 1 to 128 characters and a value of at
most 256, keys starting ``aws:`` reserved. ``TooManyTags`` and ``UnknownTarget`` are the two
refusals a front-end tells apart from other invalid input and other unknown things.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from tashi.domain.errors import InvalidInput, NotFound

MAX_TAGS = 50  # per resource
KEY_MAX = 128
VALUE_MAX = 256
RESERVED = "aws:"


class Kind(enum.Enum):
    """What can be tagged; the values are EC2's resource types."""

    instance = "instance"
    image = "image"
    key_pair = "key-pair"
    volume = "volume"
    snapshot = "snapshot"
    security_group = "security-group"


@dataclass(frozen=True, slots=True)
class Target:
    """A resource to tag: ``ref`` is an instance's id (as text), an image's name or a key
    pair's id."""

    kind: Kind
    ref: str


@dataclass(frozen=True, slots=True)
class Tag:
    target: Target
    key: str
    value: str


class TooManyTags(InvalidInput):
    """A resource would have more than ``MAX_TAGS`` tags."""


class UnknownTarget(NotFound):
    """A resource that does not exist, or not for the caller."""

    def __init__(self, target: Target) -> None:
        super().__init__(f"no {target.kind.value} {target.ref}")
        self.target = target


def key(text: str) -> str:
    if not 1 <= len(text) <= KEY_MAX:
        raise InvalidInput(f"a tag's key must have 1 to {KEY_MAX} characters, not {len(text)}")
    if text.lower().startswith(RESERVED):
        raise InvalidInput(f"tag keys starting with '{RESERVED}' are reserved for internal use")
    return text


def value(text: str) -> str:
    if len(text) > VALUE_MAX:
        raise InvalidInput(f"a tag's value must have at most {VALUE_MAX} characters")
    return text


def checked(tags: Mapping[str, str]) -> dict[str, str]:
    """``tags`` if every key and value keeps the rules (``InvalidInput`` otherwise)."""
    if len(tags) > MAX_TAGS:
        raise TooManyTags(f"a resource has at most {MAX_TAGS} tags; {len(tags)} were given")
    return {key(k): value(v) for k, v in tags.items()}


def merged(current: Mapping[str, str], new: Mapping[str, str], target: Target) -> dict[str, str]:
    """``current`` with ``new`` added (a key it has already takes the new value)."""
    out = {**current, **new}
    if len(out) > MAX_TAGS:
        raise TooManyTags(
            f"{target.kind.value} {target.ref} would have {len(out)} tags; at most {MAX_TAGS}"
        )
    return out


def removed(current: Mapping[str, str], which: Mapping[str, str | None] | None) -> dict[str, str]:
    """``current`` without the tags ``which`` names, as EC2's DeleteTags: ``None`` removes
    every tag; a key with ``None`` removes that key whatever its value; a key with a value
    removes it only if it has that value (an empty value included)."""
    if which is None:
        return {}
    return {
        k: v
        for k, v in current.items()
        if k not in which or (which[k] is not None and which[k] != v)
    }
