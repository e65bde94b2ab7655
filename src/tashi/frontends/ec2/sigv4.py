"""AWS Signature Version 4, verified on the server side: who signed an EC2 request, if anyone.

The EC2 app builds a ``SignedRequest`` from the request as it came off the wire (the raw,
percent-encoded path and query, every header, the body) and awaits ``verify``, which answers
the access key id that signed it or raises an ``Ec2Error`` (``errors``). Nothing here knows an
HTTP framework, a store or a clock: the secret comes from the caller's ``secret_of`` and the
time from its ``now``. The canonical request is built as AWS documents it and as botocore's
``SigV4Auth`` builds it (``sigv4_canonical``), in both forms botocore sends: the
``Authorization`` header and the query string of a presigned URL.

Which failure answers which code (AWS's own, as its query-protocol services answer them):

* ``AuthFailure`` (401): no authentication at all, both forms at once, a malformed
  ``Authorization`` header or ``X-Amz-*`` parameter (a missing field, a credential that is not
  ``key/date/region/service/aws4_request``, a bad date, ``host`` or the date header not among
  the signed headers, ``X-Amz-Expires`` outside 1 s to 7 days), an algorithm other than
  ``AWS4-HMAC-SHA256``, a security token (Tashi issues no temporary credentials), an unsigned
  or streaming payload (the body of an EC2 request is its action: it must be signed), and an
  unknown access key.
* ``SignatureDoesNotMatch`` (403): the signature differs from ours, and a well-formed credential
  scope that does not fit the request: another service, a region this endpoint does not serve
  (its signature may be right, but it was meant for somewhere else), a date other than the
  request's, a terminator other than ``aws4_request``; also an ``x-amz-content-sha256`` header
  that is not the body's hash, and a signed header the request does not carry.
* ``RequestExpired`` (400): a request signed more than ``max_skew`` (15 minutes) before or
  after ``now``; a presigned URL used after its ``X-Amz-Expires``, or signed more than
  ``max_skew`` in the future.

No message names the secret or the signature we computed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tashi.frontends.ec2.errors import Ec2Error
from tashi.frontends.ec2.sigv4_canonical import (
    ALGORITHM,
    AMZ_DATE,
    MISMATCH,
    Scope,
    amz_time,
    canonical_request,
    header_map,
    http_time,
    parse_query,
    signature,
)

#: The longest a presigned URL may stay valid (AWS's limit, 7 days).
MAX_EXPIRES = timedelta(days=7)

#: The secret of an access key id, or None when no such key exists.
SecretLookup = Callable[[str], Awaitable[str | None]]

_HEX64 = re.compile(r"[0-9a-f]{64}")
_SECONDS = re.compile(r"[0-9]{1,6}")
_PAYLOAD_MODES = ("UNSIGNED-PAYLOAD", "STREAMING-")
_ENCODING = ("utf-8", "surrogateescape")  # as sigv4_canonical encodes the canonical request


@dataclass(frozen=True)
class SignedRequest:
    """An HTTP request as the server received it, before anything decoded it.

    ``raw_path`` and ``query_string`` are exactly as sent (percent-encoded, no ``?``);
    ``headers`` are (name, value) pairs in any case, repeated names allowed, in arrival order.
    ``from_wire`` builds one from the bytes an ASGI scope holds.
    """

    method: str
    raw_path: str
    query_string: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""

    @classmethod
    def from_wire(
        cls,
        method: str,
        raw_path: bytes,
        query_string: bytes,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
    ) -> SignedRequest:
        """Decode as botocore encodes (UTF-8), keeping any other byte as it came."""
        return cls(
            method=method,
            raw_path=raw_path.decode(*_ENCODING),
            query_string=query_string.decode(*_ENCODING),
            headers=tuple((n.decode(*_ENCODING), v.decode(*_ENCODING)) for n, v in headers),
            body=body,
        )


@dataclass(frozen=True)
class Verified:
    """Who signed a request, with the region and time of its signature."""

    access_key_id: str
    region: str
    signed_at: datetime
    presigned: bool


@dataclass(frozen=True)
class _Claim:
    """What the client asserts: its credential, the headers it signed and its signature."""

    scope: Scope
    amz_date: str  # the request's time as the string to sign has it (20240102T030405Z)
    signed_at: datetime
    signed_headers: tuple[str, ...]
    signature: str
    expires: timedelta | None  # presigned URLs only


def _auth_failure(message: str) -> Ec2Error:
    return Ec2Error("AuthFailure", message)


async def verify(
    request: SignedRequest,
    secret_of: SecretLookup,
    now: datetime,
    *,
    region: str | Collection[str],
    service: str = "ec2",
    max_skew: timedelta = timedelta(minutes=15),
) -> Verified:
    """Check ``request``'s signature; answer who made it or raise ``Ec2Error`` (see above).

    ``now`` must be timezone-aware. ``region`` is the region name, or the names, this endpoint
    serves; a credential scoped to another is refused. ``secret_of`` is awaited once, and only
    for a well-formed, timely request.
    """
    if now.tzinfo is None:
        raise ValueError("verify needs a timezone-aware now")
    regions = frozenset({region} if isinstance(region, str) else region)
    headers = header_map(request.headers)
    query = parse_query(request.query_string)
    claim = _claim(headers, query)
    _check_scope(claim, regions, service)
    _check_time(claim, now.astimezone(UTC), max_skew)
    secret = await secret_of(claim.scope.access_key_id)
    if secret is None:
        raise _auth_failure("AWS was not able to validate the provided access credentials")
    payload_hash = _payload_hash(headers, request.body)
    presigned = claim.expires is not None
    canonical = canonical_request(
        request.method,
        request.raw_path,
        [(n, v) for n, v in query if not (presigned and n == "X-Amz-Signature")],
        headers,
        claim.signed_headers,
        payload_hash,
    )
    expected = signature(secret, claim.scope, claim.amz_date, canonical)
    if not hmac.compare_digest(expected, claim.signature):
        raise Ec2Error("SignatureDoesNotMatch", MISMATCH)
    return Verified(claim.scope.access_key_id, claim.scope.region, claim.signed_at, presigned)


def _claim(headers: Mapping[str, list[str]], query: list[tuple[str, str]]) -> _Claim:
    authorization = headers.get("authorization")
    presigned = any(name == "X-Amz-Algorithm" for name, _ in query)
    if authorization and presigned:
        raise _auth_failure(
            "Only one auth mechanism allowed: the request has both an Authorization header "
            "and X-Amz-Algorithm in its query string"
        )
    if "x-amz-security-token" in headers or any(n == "X-Amz-Security-Token" for n, _ in query):
        raise _auth_failure(
            "Tashi issues no temporary credentials: sign with an access key and its secret "
            "alone (unset AWS_SESSION_TOKEN)"
        )
    if authorization:
        if len(authorization) > 1:
            raise _auth_failure("The request has more than one Authorization header")
        return _claim_from_header(authorization[0], headers)
    if presigned:
        return _claim_from_query(query)
    raise _auth_failure(
        "The request is not signed: it has neither an Authorization header nor X-Amz-Algorithm, "
        "X-Amz-Credential and X-Amz-Signature query parameters (AWS Signature Version 4)"
    )


def _claim_from_header(value: str, headers: Mapping[str, list[str]]) -> _Claim:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _auth_failure(
            f"Unsupported authorization algorithm {algorithm[:40]!r}: Tashi verifies "
            f"{ALGORITHM} (AWS Signature Version 4) only"
        )
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, eq, field = part.strip().partition("=")
        if not eq or name in fields or name not in ("Credential", "SignedHeaders", "Signature"):
            raise _auth_failure(f"Malformed Authorization header: unexpected {part.strip()!r}")
        fields[name] = field
    missing = {"Credential", "SignedHeaders", "Signature"} - fields.keys()
    if missing:
        raise _auth_failure(f"Authorization header requires {', '.join(sorted(missing))}")
    if "x-amz-date" in headers:
        date_header, signed_at = "x-amz-date", amz_time(headers["x-amz-date"][-1])
    elif "date" in headers:
        date_header, signed_at = "date", http_time(headers["date"][-1])
    else:
        raise _auth_failure("Authorization header requires an X-Amz-Date or a Date header")
    credential, signed, sig = fields["Credential"], fields["SignedHeaders"], fields["Signature"]
    return _make_claim(credential, signed_at, signed, sig, None, date_header)


def _claim_from_query(query: list[tuple[str, str]]) -> _Claim:
    names = ("Algorithm", "Credential", "Date", "Expires", "SignedHeaders", "Signature")
    params: dict[str, str] = {}
    for name in names:
        values = [v for n, v in query if n == f"X-Amz-{name}"]
        if len(values) != 1:
            raise _auth_failure(f"A presigned URL needs exactly one X-Amz-{name} parameter")
        params[name] = values[0]
    if params["Algorithm"] != ALGORITHM:
        raise _auth_failure(f"X-Amz-Algorithm must be {ALGORITHM}")
    expires = params["Expires"]
    if not _SECONDS.fullmatch(expires) or not 1 <= int(expires) <= MAX_EXPIRES.total_seconds():
        raise _auth_failure("X-Amz-Expires must be a number of seconds from 1 to 604800 (7 days)")
    signed_at, lifetime = amz_time(params["Date"]), timedelta(seconds=int(expires))
    credential, signed, sig = params["Credential"], params["SignedHeaders"], params["Signature"]
    return _make_claim(credential, signed_at, signed, sig, lifetime, None)


def _make_claim(
    credential: str,
    signed_at: datetime,
    signed_headers: str,
    signature_hex: str,
    expires: timedelta | None,
    date_header: str | None,
) -> _Claim:
    names = tuple(sorted({name.strip().lower() for name in signed_headers.split(";")}))
    if "" in names:
        raise _auth_failure("SignedHeaders must be header names separated by ';'")
    required = ("host",) if date_header is None else ("host", date_header)
    for name in required:
        if name not in names:
            raise _auth_failure(f"The {name} header must be among the signed headers")
    if not _HEX64.fullmatch(signature_hex):
        raise _auth_failure("The signature must be 64 lowercase hexadecimal digits")
    return _Claim(
        scope=Scope.parse(credential),
        amz_date=f"{signed_at:{AMZ_DATE}}",
        signed_at=signed_at,
        signed_headers=names,
        signature=signature_hex,
        expires=expires,
    )


def _check_scope(claim: _Claim, regions: frozenset[str], service: str) -> None:
    scope = claim.scope
    if scope.terminator != "aws4_request":
        problem = (
            "Credential should be scoped with a valid terminator: 'aws4_request', "
            f"not {scope.terminator!r}."
        )
    elif scope.service != service:
        problem = f"Credential should be scoped to correct service: {service!r}."
    elif scope.region not in regions:
        served = ", ".join(repr(r) for r in sorted(regions))
        problem = (
            f"Credential should be scoped to a valid region, not {scope.region!r}: "
            f"this endpoint serves {served}."
        )
    elif scope.date != claim.amz_date[:8]:
        problem = (
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: {scope.date!r} != {claim.amz_date[:8]!r}."
        )
    else:
        return
    raise Ec2Error("SignatureDoesNotMatch", problem)


def _check_time(claim: _Claim, now: datetime, max_skew: timedelta) -> None:
    signed, skew = f"signed at {claim.amz_date}", f"{max_skew.total_seconds() / 60:g} minutes"
    late = claim.signed_at + (claim.expires or max_skew)
    if claim.signed_at - now > max_skew:
        problem = f"it was {signed}, more than {skew} ahead of the server's clock"
    elif now > late and claim.expires is not None:
        problem = f"the presigned URL {signed} expired at {late:{AMZ_DATE}}"
    elif now > late:
        problem = f"it was {signed}, more than {skew} behind the server's clock"
    else:
        return
    message = f"Request has expired: {problem} (server time {now:{AMZ_DATE}})."
    raise Ec2Error("RequestExpired", message)


def _payload_hash(headers: Mapping[str, list[str]], body: bytes) -> str:
    computed = hashlib.sha256(body).hexdigest()
    claimed = headers.get("x-amz-content-sha256")
    if claimed is None:
        return computed
    if claimed[-1].startswith(_PAYLOAD_MODES):
        raise _auth_failure(
            f"x-amz-content-sha256 {claimed[-1][:40]!r} is refused: an EC2 request's body "
            "must be signed"
        )
    if len(claimed) != 1 or claimed[0].strip().lower() != computed:
        raise Ec2Error(
            "SignatureDoesNotMatch",
            "The provided x-amz-content-sha256 header does not match what was computed.",
        )
    return claimed[0]
