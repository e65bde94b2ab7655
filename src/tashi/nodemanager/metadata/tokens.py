"""IMDSv2 session tokens: ``PUT /latest/api/token`` gives one, a request bearing it is trusted.

A token is ``<payload>.<signature>`` in URL-safe base64: the payload names the instance it was
given to and when it expires, the signature is an HMAC-SHA256 of it with this node manager's key
(``metadata-token-key`` in its state directory, mode 0600, made once: tokens outlive a restart
of the node manager). A token is valid on the instance it was made for, until its TTL runs out;
anywhere else, or later, it is refused (401), as EC2 refuses another instance's token. A VM that
migrated presents a token the target host did not sign: it is refused, and clients ask for a new
one, as after EC2's stop and start (the AWS SDKs and cloud-init do it on a 401).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from tashi.domain.errors import BackendFailure, Dependency

MIN_TTL = 1
MAX_TTL = 21600  # six hours, EC2's limit
KEY_FILE = "metadata-token-key"


def load_key(state_dir: Path) -> bytes:
    """The signing key kept in ``state_dir``, made on first use."""
    path = state_dir / KEY_FILE
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise BackendFailure(f"cannot read {path}: {exc}", failed=Dependency.file_system) from exc
    key = secrets.token_bytes(32)
    tmp = path.with_suffix(".new")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key)
        os.replace(tmp, path)
    except OSError as exc:
        raise BackendFailure(f"cannot write {path}: {exc}", failed=Dependency.file_system) from exc
    return key


class Tokens:
    """Makes and checks tokens with one key; ``now`` is the wall clock (seconds)."""

    def __init__(self, key: bytes, now: Callable[[], float]) -> None:
        self._key = key
        self._now = now

    def make(self, instance_id: int, ttl: int) -> str:
        expires = int(self._now()) + ttl
        payload = f"{instance_id}:{expires}:{secrets.token_hex(8)}".encode()
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def valid(self, token: str, instance_id: int) -> bool:
        """Whether ``token`` was made here for ``instance_id`` and has not expired."""
        try:
            payload_text, signature_text = token.strip().split(".")
            payload, signature = _unb64(payload_text), _unb64(signature_text)
            owner, expires, _ = payload.decode("ascii").split(":")
            fresh = int(expires) > self._now()
        except (ValueError, UnicodeDecodeError):
            return False
        signed = hmac.compare_digest(signature, self._sign(payload))
        return signed and fresh and owner == str(int(instance_id))

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()


def parse_ttl(text: str | None) -> int | None:
    """The TTL of a token request's header, ``None`` when missing or outside 1 to 21600."""
    if text is None or not text.strip().isdigit():
        return None
    ttl = int(text.strip())
    return ttl if MIN_TTL <= ttl <= MAX_TTL else None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
