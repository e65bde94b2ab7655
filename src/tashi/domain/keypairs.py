"""Users' SSH key pairs (EC2's key pairs): a public key kept under a name, for the guests a user
launches to let its owner in (``RunInstances --key-name``, the metadata's ``public-keys``).

A key pair belongs to one user; its name is unique among that user's (another user may use the
same name), and it goes with its user. Only the public key is kept: a key pair the cluster made
(``CreateKeyPair``) had its private key told once, in the answer that made it. The key
material, its formats and fingerprints are ``clustermanager/keypairs/material.py``'s; the
store keeps the record (``storage/contract.py``, ``KeyPairRepository``), the tags of a key pair
beside it (``tx.key_pair_tags``).
"""

from __future__ import annotations

import enum
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from tashi.domain.errors import InvalidInput
from tashi.domain.ids import UserId

NAME_MAX = 255  # characters of a key pair's name, as AWS's
PUBLIC_KEY_MAX = 8192  # characters of a public key in OpenSSH's one-line format
FINGERPRINT_MAX = 95  # SHA-1 in colon-separated hex is 59, SHA-256 in base64 44
ID_PREFIX = "key-"
_ID = re.compile(r"key-[0-9a-f]{17}")
_NAME = re.compile(rf"[\x20-\x7e]{{1,{NAME_MAX}}}")  # printable ASCII, as AWS allows


class KeyType(enum.Enum):
    rsa = "rsa"
    ed25519 = "ed25519"
    ecdsa = "ecdsa"  # imported only: EC2's model names rsa and ed25519 alone


class KeyMaterialInvalid(InvalidInput):
    """Key material that is not a public key Tashi takes (format, type or size)."""


@dataclass(frozen=True, slots=True)
class KeyPair:
    id: str  # "key-" and 17 hexadecimal digits
    user_id: UserId
    name: str
    key_type: KeyType
    fingerprint: str  # as AWS computes it (``material.py``)
    public_key: str  # one line of OpenSSH's format: type, base64, comment
    created_at: datetime


def new_id() -> str:
    return ID_PREFIX + secrets.token_hex(9)[:17]


def is_id(text: str) -> bool:
    return _ID.fullmatch(text) is not None


def name(text: str) -> str:
    """``text`` if it can name a key pair (1 to 255 printable ASCII characters)."""
    if not _NAME.fullmatch(text):
        raise InvalidInput(f"a key pair's name must be 1 to {NAME_MAX} printable ASCII characters")
    return text
