"""Key material: new key pairs, public keys read from what users import, and fingerprints
computed exactly as AWS computes them, so that a fingerprint Tashi shows can be checked the
way AWS's documentation says (``openssl``, ``ssh-keygen``).

Fingerprints (AWS's user guide, "Verify the fingerprint of your key pair"):

* an RSA key pair the cluster made: the SHA-1 of the private key in DER PKCS#8, in
  colon-separated hexadecimal (``openssl pkcs8 -topk8 -nocrypt -outform DER | openssl sha1 -c``);
* an imported RSA key: the MD5 of the public key in DER (SubjectPublicKeyInfo), the same way
  (``openssl pkey -pubout -outform DER | openssl md5 -c``); not OpenSSH's MD5, which hashes the
  SSH encoding;
* ED25519 (made or imported), and ECDSA (imported): the SHA-256 of the SSH encoding in base64
  with its padding (OpenSSH's ``SHA256:`` fingerprint, which drops the ``=``).

A private key leaves as AWS gives it: RSA in PEM PKCS#1 (``BEGIN RSA PRIVATE KEY``), ED25519
in OpenSSH's own format, neither encrypted. Imported keys may be OpenSSH's one-line format, the
SSH2 format of RFC 4716, or PEM/DER (base64) SubjectPublicKeyInfo; RSA of 1024 to 16384 bits,
ED25519 and ECDSA (NIST P-256/384/521). DSA and security-key (``sk-``) keys are refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tashi.domain.keypairs import PUBLIC_KEY_MAX, KeyMaterialInvalid, KeyType

RSA_BITS = 2048  # what CreateKeyPair makes, as AWS
RSA_MIN, RSA_MAX = 1024, 16384
_MATERIAL_MAX = 16384  # bytes of imported material considered
_SSH2_BEGIN = "---- BEGIN SSH2 PUBLIC KEY ----"
_SSH2_END = "---- END SSH2 PUBLIC KEY ----"
_OPENSSH_TYPES = re.compile(r"(ssh-rsa|ssh-ed25519|ecdsa-sha2-nistp(256|384|521))")
_COMMENT_CHARS = re.compile(r"[\x20-\x7e]*")

PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


@dataclass(frozen=True, slots=True)
class Made:
    """A key pair just made: the one time its private key exists outside the caller."""

    key_type: KeyType
    private_key: str  # PEM (RSA) or OpenSSH (ED25519), unencrypted
    public_key: str  # OpenSSH one line, the key pair's name as its comment
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Imported:
    key_type: KeyType
    public_key: str  # OpenSSH one line, with the comment it came with (else the name)
    fingerprint: str


def make(key_type: KeyType, comment: str) -> Made:
    """A new key pair of ``key_type`` (RSA: 2048 bits). CPU-bound: run it off the loop."""
    if key_type is KeyType.rsa:
        key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        pkcs8 = key.private_bytes(ser.Encoding.DER, ser.PrivateFormat.PKCS8, ser.NoEncryption())
        private = key.private_bytes(
            ser.Encoding.PEM, ser.PrivateFormat.TraditionalOpenSSL, ser.NoEncryption()
        )
        return Made(key_type, private.decode(), _openssh(key.public_key(), comment), _sha1(pkcs8))
    if key_type is KeyType.ed25519:
        ed = ed25519.Ed25519PrivateKey.generate()
        private = ed.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.OpenSSH, ser.NoEncryption())
        public = ed.public_key()
        return Made(key_type, private.decode(), _openssh(public, comment), _sha256(public))
    raise KeyMaterialInvalid(f"key pairs of type {key_type.value} are imported, not made")


def read(material: bytes, comment: str) -> Imported:
    """The public key in ``material`` (as ImportKeyPair's ``PublicKeyMaterial`` decodes);
    ``KeyMaterialInvalid`` when it is not one Tashi takes."""
    key, given_comment = _public_key(material)
    key_type = _checked_type(key)
    if key_type is KeyType.rsa:
        assert isinstance(key, rsa.RSAPublicKey)
        fingerprint = _md5(
            key.public_bytes(ser.Encoding.DER, ser.PublicFormat.SubjectPublicKeyInfo)
        )
    else:
        fingerprint = _sha256(key)
    line = _openssh(key, given_comment or comment)
    if len(line) > PUBLIC_KEY_MAX:
        raise KeyMaterialInvalid(f"the public key is longer than {PUBLIC_KEY_MAX} characters")
    return Imported(key_type, line, fingerprint)


def _public_key(material: bytes) -> tuple[PublicKey, str]:
    text = _text(material)
    if text.startswith(_SSH2_BEGIN):
        return _loaded(lambda: _ssh2(text)), ""
    if text.startswith("-----BEGIN"):
        return _loaded(lambda: ser.load_pem_public_key(text.encode())), ""
    if _OPENSSH_TYPES.match(text) or text.startswith(("ssh-", "ecdsa-", "sk-")):
        return _openssh_line(text)
    try:  # base64: of DER (AWS takes it), or of any of the above (encoded twice)
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid() from None
    if raw.startswith(b"0"):  # a DER SEQUENCE
        return _loaded(lambda: ser.load_der_public_key(raw)), ""
    if raw.lstrip()[:4] in (b"ssh-", b"ecds", b"----"):
        return _public_key(raw)
    raise _invalid()


def _text(material: bytes) -> str:
    if not material or len(material) > _MATERIAL_MAX:
        raise _invalid()
    try:
        return material.decode("ascii").strip()
    except UnicodeDecodeError:
        raise _invalid() from None


def _openssh_line(text: str) -> tuple[PublicKey, str]:
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise _invalid()
    kind, _, rest = lines[0].partition(" ")
    if not _OPENSSH_TYPES.fullmatch(kind):
        raise KeyMaterialInvalid(
            f"key type {kind} is not supported: import an RSA, ED25519 or ECDSA public key"
        )
    blob, _, comment = rest.strip().partition(" ")
    key = _loaded(lambda: ser.load_ssh_public_key(f"{kind} {blob}".encode()))
    comment = comment.strip()
    return key, comment if _COMMENT_CHARS.fullmatch(comment) else ""


def _ssh2(text: str) -> object:
    """RFC 4716: headers (``Name: value``, continued by a trailing ``\\``), then base64."""
    lines = text.splitlines()
    if lines[-1].strip() != _SSH2_END:
        raise _invalid()
    body: list[str] = []
    continued = False
    for line in (x.strip() for x in lines[1:-1]):
        if continued or (":" in line and not body):
            continued = line.endswith("\\")
            continue
        body.append(line)
    blob = base64.b64decode("".join(body), validate=True)
    kind = blob[4 : 4 + int.from_bytes(blob[:4], "big")].decode("ascii")
    return ser.load_ssh_public_key(f"{kind} {base64.b64encode(blob).decode()}".encode())


def _loaded(load: Callable[[], object]) -> PublicKey:
    try:
        key = load()
    except (ValueError, UnsupportedAlgorithm, IndexError, binascii.Error, UnicodeDecodeError):
        raise _invalid() from None
    if not isinstance(key, rsa.RSAPublicKey | ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise KeyMaterialInvalid(
            f"{type(key).__name__} keys are not supported: import an RSA, ED25519 or ECDSA key"
        )
    return key


def _checked_type(key: PublicKey) -> KeyType:
    if isinstance(key, rsa.RSAPublicKey):
        if not RSA_MIN <= key.key_size <= RSA_MAX:
            raise KeyMaterialInvalid(
                f"an RSA key must have {RSA_MIN} to {RSA_MAX} bits, not {key.key_size}"
            )
        return KeyType.rsa
    if isinstance(key, ed25519.Ed25519PublicKey):
        return KeyType.ed25519
    if not isinstance(key.curve, ec.SECP256R1 | ec.SECP384R1 | ec.SECP521R1):
        raise KeyMaterialInvalid(f"ECDSA keys on {key.curve.name} are not supported")
    return KeyType.ecdsa


def _invalid() -> KeyMaterialInvalid:
    return KeyMaterialInvalid("Key is not in valid OpenSSH public key format")


def _openssh(key: PublicKey, comment: str) -> str:
    line = key.public_bytes(ser.Encoding.OpenSSH, ser.PublicFormat.OpenSSH).decode()
    return f"{line} {comment}" if comment else line


def _colons(digest: bytes) -> str:
    return ":".join(f"{b:02x}" for b in digest)


def _sha1(der: bytes) -> str:
    return _colons(hashlib.sha1(der, usedforsecurity=False).digest())


def _md5(der: bytes) -> str:
    return _colons(hashlib.md5(der, usedforsecurity=False).digest())


def _sha256(key: PublicKey) -> str:
    """OpenSSH's SHA-256 fingerprint with base64's padding, as AWS shows it."""
    blob = base64.b64decode(
        key.public_bytes(ser.Encoding.OpenSSH, ser.PublicFormat.OpenSSH).split()[1]
    )
    return base64.b64encode(hashlib.sha256(blob).digest()).decode()
