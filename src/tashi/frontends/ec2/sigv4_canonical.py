"""The arithmetic of AWS Signature Version 4: canonical request, string to sign, signature.

``sigv4`` reads what a client claims and decides what to refuse; this module reads the pieces
of the wire format (credential scope, times, headers, query) and computes, from the request as
received, what a client with the secret would have signed. Each step is
the one AWS documents ("Create a canonical request for Signature Version 4") and botocore's
``SigV4Auth`` performs, which is what every boto3 and AWS CLI request is signed with:

* canonical URI: the path as sent (already percent-encoded once), dot segments and repeated
  slashes removed, then percent-encoded again (``/`` and ``~`` kept) -- the double encoding of
  every service but S3;
* canonical query: each name and value decoded, then encoded with only ``A-Z a-z 0-9 - _ . ~``
  left as they are, sorted by encoded name, then value. A ``+`` decodes to a space: botocore
  sends a space as ``+`` in a GET's query (and signs it as ``%20``), a ``+`` as ``%2B``, and
  the EC2 app's form parser reads the query the same way, so what is verified is what runs;
* canonical headers: the signed ones, names lower-cased, each value trimmed with its runs of
  whitespace folded to one space, repeated headers joined by ``,`` in arrival order;
* the payload hash: SHA-256 of the body, as hex.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote_plus

from tashi.frontends.ec2.errors import Ec2Error

ALGORITHM = "AWS4-HMAC-SHA256"
#: The format of X-Amz-Date and of the time in the string to sign.
AMZ_DATE = "%Y%m%dT%H%M%SZ"

MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method."
)

# Text is UTF-8 on the wire; a byte that is not valid UTF-8 round-trips as a lone surrogate,
# so the canonical request hashes the very bytes the client sent.
_ENCODING = "utf-8"
_ERRORS = "surrogateescape"
_AMZ_DATE_SHAPE = re.compile(r"[0-9]{8}T[0-9]{6}Z")


@dataclass(frozen=True)
class Scope:
    """A credential: ``access_key_id/date/region/service/terminator``."""

    access_key_id: str
    date: str
    region: str
    service: str
    terminator: str

    @classmethod
    def parse(cls, credential: str) -> Scope:
        parts = credential.split("/")
        if len(parts) != 5 or not all(parts):
            raise Ec2Error(
                "AuthFailure",
                "Credential must have exactly 5 slash-delimited elements, "
                "e.g. keyid/date/region/service/aws4_request",
            )
        return cls(*parts)

    def __str__(self) -> str:
        """The scope as the string to sign has it: without the key id."""
        return f"{self.date}/{self.region}/{self.service}/{self.terminator}"


def amz_time(value: str) -> datetime:
    """The time of an ``X-Amz-Date`` (``20240102T030405Z``), in UTC."""
    try:
        if not _AMZ_DATE_SHAPE.fullmatch(value):
            raise ValueError(value)
        return datetime.strptime(value, AMZ_DATE).replace(tzinfo=UTC)
    except ValueError:
        raise Ec2Error(
            "AuthFailure", f"X-Amz-Date must be a time like 20240102T030405Z, not {value[:40]!r}"
        ) from None


def http_time(value: str) -> datetime:
    """The time of an HTTP ``Date`` header (``Tue, 02 Jan 2024 03:04:05 GMT``), in UTC."""
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise Ec2Error("AuthFailure", f"Date is not an HTTP date: {value[:40]!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def header_map(headers: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Headers by lower-cased name, each with its values in arrival order."""
    by_name: dict[str, list[str]] = {}
    for name, value in headers:
        by_name.setdefault(name.strip().lower(), []).append(value)
    return by_name


def parse_query(raw: str) -> list[tuple[str, str]]:
    """The decoded (name, value) pairs of a raw query string, in order; a name alone has ""."""
    pairs = []
    for item in raw.split("&"):
        if item:
            name, _, value = item.partition("=")
            pairs.append((_decode(name), _decode(value)))
    return pairs


def canonical_request(
    method: str,
    raw_path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, list[str]],
    signed_headers: Sequence[str],
    payload_hash: str,
) -> str:
    """The canonical request; ``signed_headers`` sorted and lower-cased, ``query`` decoded.

    Raises ``Ec2Error("SignatureDoesNotMatch")`` when a signed header is not in ``headers``.
    """
    return "\n".join(
        [
            method.upper(),
            canonical_uri(raw_path),
            canonical_query(query),
            canonical_headers(headers, signed_headers) + "\n",
            ";".join(signed_headers),
            payload_hash,
        ]
    )


def canonical_uri(raw_path: str) -> str:
    return quote(_remove_dot_segments(raw_path) or "/", safe="/~", errors=_ERRORS)


def canonical_query(query: Iterable[tuple[str, str]]) -> str:
    encoded = sorted((_encode(name), _encode(value)) for name, value in query)
    return "&".join(f"{name}={value}" for name, value in encoded)


def canonical_headers(headers: Mapping[str, list[str]], signed_headers: Sequence[str]) -> str:
    lines = []
    for name in signed_headers:
        values = headers.get(name)
        if values is None:
            raise Ec2Error(
                "SignatureDoesNotMatch", f"{MISMATCH} (The signed header {name!r} is missing.)"
            )
        lines.append(f"{name}:{','.join(' '.join(value.split()) for value in values)}")
    return "\n".join(lines)


def signature(secret: str, scope: Scope, amz_date: str, canonical: str) -> str:
    """The hex signature of ``canonical`` made at ``amz_date`` with ``secret`` for ``scope``."""
    digest = hashlib.sha256(canonical.encode(_ENCODING, _ERRORS)).hexdigest()
    string_to_sign = "\n".join([ALGORITHM, amz_date, str(scope), digest])
    key = f"AWS4{secret}".encode(_ENCODING, _ERRORS)
    for part in (scope.date, scope.region, scope.service, scope.terminator):
        key = hmac.new(key, part.encode(_ENCODING, _ERRORS), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode(_ENCODING, _ERRORS), hashlib.sha256).hexdigest()


def _decode(text: str) -> str:
    return unquote_plus(text, encoding=_ENCODING, errors=_ERRORS)


def _encode(text: str) -> str:
    return quote(text, safe="-_.~", encoding=_ENCODING, errors=_ERRORS)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986's dot-segment removal, empty segments dropped too, as botocore does it."""
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and segments else ""
    return first + "/".join(segments) + last
