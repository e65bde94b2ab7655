"""AWS Signature Version 4 verification (``tashi.frontends.ec2.sigv4``), against botocore.

Every request here is signed by botocore itself (boto3's EC2 client, the AWS CLI's driver,
``SigV4Auth``/``SigV4QueryAuth`` on an ``AWSRequest``) with its clock frozen at ``SIGNED_AT``,
captured as it would go on the wire, and verified with a fixed ``now``: what botocore signs
is accepted, and each way of getting it wrong answers its AWS error code.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.auth
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSPreparedRequest, AWSRequest
from botocore.credentials import Credentials

from tashi.frontends.ec2.errors import Ec2Error
from tashi.frontends.ec2.sigv4 import SignedRequest, Verified, verify

SIGNED_AT = datetime(2024, 3, 5, 12, 30, 0, tzinfo=UTC)
KEY = "AKIATASHIEXAMPLE0001"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
REGION = "tashi-1"
ENDPOINT = "http://cm.example:8773"
FORM = "application/x-www-form-urlencoded; charset=utf-8"
#: Values that take every branch of the encoding: space, ~, /, +, =, &, %, unicode.
ODD = ["a b~c/d+e", "x=1&y=%41", "ünïcødé ☃ 日本"]


@pytest.fixture(autouse=True)
def frozen_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore signs at SIGNED_AT and reads no credentials or config of this machine."""
    monkeypatch.setattr(
        botocore.auth,
        "get_current_datetime",
        lambda remove_tzinfo=True: SIGNED_AT.replace(tzinfo=None),
    )
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")


# -- capturing what botocore sends --------------------------------------------------------


def on_the_wire(prepared: AWSPreparedRequest) -> SignedRequest:
    """The request as the server receives it: the HTTP client adds Host, nothing else."""
    url = urlsplit(prepared.url)
    headers = [(name, _text(value)) for name, value in prepared.headers.items()]
    body = prepared.body or b""
    return SignedRequest(
        method=prepared.method,
        raw_path=url.path or "/",
        query_string=url.query,
        headers=(("Host", url.netloc), *headers),
        body=body.encode() if isinstance(body, str) else body,
    )


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class _Sent(Exception):
    """Raised in place of sending, once the signed request is captured."""


def boto3_sends(call: Callable[[Any], object], secret: str = SECRET) -> SignedRequest:
    """What boto3's EC2 client sends for ``call(client)``."""
    session = boto3.session.Session(
        aws_access_key_id=KEY, aws_secret_access_key=secret, region_name=REGION
    )
    client = session.client("ec2", endpoint_url=ENDPOINT)
    sent: list[AWSPreparedRequest] = []

    def capture(request: AWSPreparedRequest, **_: object) -> None:
        sent.append(request)
        raise _Sent

    client.meta.events.register("before-send", capture)
    with pytest.raises(_Sent):
        call(client)
    return on_the_wire(sent[0])


def sign(
    request: AWSRequest,
    *,
    secret: str = SECRET,
    token: str | None = None,
    service: str = "ec2",
    region: str = REGION,
    expires: int | None = None,
) -> SignedRequest:
    """``request`` signed by SigV4Auth, or presigned by SigV4QueryAuth when ``expires``."""
    credentials = Credentials(KEY, secret, token)
    if expires is None:
        SigV4Auth(credentials, service, region).add_auth(request)
    else:
        SigV4QueryAuth(credentials, service, region, expires=expires).add_auth(request)
    return on_the_wire(request.prepare())


def post(params: dict[str, str], **headers: str) -> AWSRequest:
    return AWSRequest(
        "POST", f"{ENDPOINT}/", data=params, headers={"Content-Type": FORM, **headers}
    )


def get(params: dict[str, str], path: str = "/") -> AWSRequest:
    return AWSRequest("GET", f"{ENDPOINT}{path}", params=params)


ODD_PARAMS = {"Action": "DescribeTags", "Version": "2016-11-15"} | {
    f"Filter.1.Value.{n}": value for n, value in enumerate(ODD, 1)
}


# -- verifying ---------------------------------------------------------------------------


async def _secret_of(access_key_id: str) -> str | None:
    return SECRET if access_key_id == KEY else None


def check(
    request: SignedRequest,
    now: datetime = SIGNED_AT + timedelta(seconds=3),
    region: str | tuple[str, ...] = REGION,
) -> Verified:
    return asyncio.run(verify(request, _secret_of, now, region=region))


def refused(code: str, request: SignedRequest, now: datetime = SIGNED_AT, **kw: Any) -> str:
    """Verify ``request``, expecting ``code``; answer the message, which tells no secret."""
    with pytest.raises(Ec2Error) as caught:
        check(request, now, **kw)
    assert caught.value.code == code, caught.value.message
    assert SECRET not in caught.value.message
    return caught.value.message


def with_header(request: SignedRequest, name: str, value: str | None) -> SignedRequest:
    """``request`` with header ``name`` set to ``value`` (removed when None)."""
    kept = tuple((n, v) for n, v in request.headers if n.lower() != name.lower())
    added = () if value is None else ((name, value),)
    return dataclasses.replace(request, headers=kept + added)


def header(request: SignedRequest, name: str) -> str:
    return next(v for n, v in request.headers if n.lower() == name.lower())


# -- accepted ----------------------------------------------------------------------------


def test_boto3_describe_instances_with_odd_filter_values_is_accepted() -> None:
    request = boto3_sends(
        lambda ec2: ec2.describe_instances(Filters=[{"Name": "tag:a b/c", "Values": ODD}])
    )
    assert request.method == "POST"
    assert header(request, "Content-Type") == FORM
    assert b"Action=DescribeInstances&Version=2016-11-15" in request.body
    assert check(request) == Verified(KEY, REGION, SIGNED_AT, presigned=False)


def test_boto3_create_tags_with_odd_keys_and_values_is_accepted() -> None:
    tags = [{"Key": f"k {n}~/+", "Value": value} for n, value in enumerate(ODD)]
    request = boto3_sends(lambda ec2: ec2.create_tags(Resources=["i-0123456789abcdef0"], Tags=tags))
    assert check(request).access_key_id == KEY


def test_from_wire_decodes_the_bytes_of_an_asgi_scope_as_botocore_encoded_them() -> None:
    request = boto3_sends(
        lambda ec2: ec2.describe_instances(Filters=[{"Name": "n", "Values": ODD}])
    )
    wire = SignedRequest.from_wire(
        request.method,
        request.raw_path.encode(),
        request.query_string.encode(),
        [(n.lower().encode(), v.encode()) for n, v in request.headers],
        request.body,
    )
    assert check(wire).access_key_id == KEY


def test_a_get_with_odd_values_in_its_query_is_accepted() -> None:
    request = sign(get(ODD_PARAMS))
    assert "+" in request.query_string  # botocore sends a space as '+' and signs it as %20
    assert check(request).presigned is False


def test_a_path_is_encoded_twice_and_normalized_as_botocore_does() -> None:
    request = sign(get({"Action": "DescribeRegions"}, path="/ec2/./%C3%BC%20x//~a/b/../"))
    assert check(request).access_key_id == KEY


def test_a_post_signed_with_a_date_header_instead_of_x_amz_date_is_accepted() -> None:
    request = sign(post({"Action": "DescribeRegions"}, Date="Mon, 01 Jan 2024 00:00:00 GMT"))
    assert header(request, "Date") == "Tue, 05 Mar 2024 12:30:00 -0000"
    assert check(request).signed_at == SIGNED_AT


def test_signed_headers_are_trimmed_and_their_inner_spaces_folded() -> None:
    request = sign(post({"Action": "DescribeRegions"}, **{"X-Tashi-Note": "  a   b \t c  "}))
    assert "x-tashi-note" in header(request, "Authorization")
    assert check(with_header(request, "X-Tashi-Note", "a b   c")).access_key_id == KEY


def test_repeated_headers_are_joined_in_arrival_order_as_botocore_joins_them() -> None:
    request = post({"Action": "DescribeRegions"}, **{"X-Rep": " one  1 "})
    request.headers.add_header("x-rep", "two")  # botocore signs both values...
    wire = sign(request)  # ...and prepare() keeps the last: send what was signed
    host = ("Host", header(wire, "Host"))
    sent = dataclasses.replace(wire, headers=(host, *request.headers.items()))
    assert [v for n, v in sent.headers if n.lower() == "x-rep"] == [" one  1 ", "two"]
    assert check(sent).access_key_id == KEY
    swapped = [(n, v) for n, v in sent.headers if n.lower() != "x-rep"]
    swapped += [("x-rep", "two"), ("X-Rep", "one 1")]
    refused("SignatureDoesNotMatch", dataclasses.replace(sent, headers=tuple(swapped)))


def test_a_matching_x_amz_content_sha256_is_accepted() -> None:
    body = b"Action=DescribeRegions&Version=2016-11-15"
    digest = hashlib.sha256(body).hexdigest()
    headers = {"Content-Type": FORM, "X-Amz-Content-SHA256": digest}
    request = sign(AWSRequest("POST", f"{ENDPOINT}/", data=body, headers=headers))
    assert "x-amz-content-sha256" in header(request, "Authorization")
    assert check(request).access_key_id == KEY


@pytest.mark.parametrize("shift", [timedelta(minutes=-14), timedelta(minutes=14, seconds=59)])
def test_a_clock_skew_within_15_minutes_is_accepted(shift: timedelta) -> None:
    assert check(sign(post({"Action": "DescribeRegions"})), SIGNED_AT + shift).access_key_id == KEY


def test_a_request_for_one_of_several_served_regions_is_accepted() -> None:
    request = sign(post({"Action": "DescribeRegions"}), region="tashi-2")
    assert check(request, region=("tashi-1", "tashi-2")).region == "tashi-2"


def test_a_presigned_get_is_accepted_until_it_expires() -> None:
    request = sign(get(ODD_PARAMS), expires=300)
    assert "X-Amz-Signature=" in request.query_string
    assert check(request).presigned is True
    assert check(request, SIGNED_AT + timedelta(seconds=300)).presigned is True
    # a space sent as '+' rather than '%20' means the same, and is read the same
    assert "%20" in request.query_string
    same = dataclasses.replace(request, query_string=request.query_string.replace("%20", "+"))
    assert check(same).presigned is True


def test_a_presigned_post_moves_its_form_into_the_query_and_is_accepted() -> None:
    request = sign(post(ODD_PARAMS), expires=60)
    assert request.body == b""
    assert check(request).access_key_id == KEY


def test_boto3_generate_presigned_url_is_accepted() -> None:
    client = boto3.session.Session(
        aws_access_key_id=KEY, aws_secret_access_key=SECRET, region_name=REGION
    ).client("ec2", endpoint_url=ENDPOINT)
    url = urlsplit(
        client.generate_presigned_url(
            "describe_instances", Params={"InstanceIds": ["i-1", "ü ~/+"]}, ExpiresIn=900
        )
    )
    # botocore signs it with the operation's method, POST for EC2: it is to be POSTed, empty
    request = SignedRequest("POST", url.path or "/", url.query, (("Host", url.netloc),))
    assert check(request, SIGNED_AT + timedelta(minutes=14)) == Verified(
        KEY, REGION, SIGNED_AT, presigned=True
    )


def test_the_aws_cli_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    from awscli.clidriver import create_clidriver

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    driver = create_clidriver()
    sent: list[AWSPreparedRequest] = []

    def capture(request: AWSPreparedRequest, **_: object) -> None:
        sent.append(request)
        raise _Sent

    driver.session.register("before-send", capture)
    args = ["ec2", "describe-instances", "--endpoint-url", ENDPOINT, "--region", REGION]
    args += ["--filters", "Name=tag:Name,Values=a b~c/d,ü"]
    driver.main(args)
    assert check(on_the_wire(sent[0])).access_key_id == KEY


# -- refused -----------------------------------------------------------------------------


def test_a_wrong_secret_does_not_match_and_the_right_signature_is_not_told() -> None:
    good = boto3_sends(lambda ec2: ec2.describe_instances(Filters=[{"Name": "n", "Values": ODD}]))
    bad = boto3_sends(
        lambda ec2: ec2.describe_instances(Filters=[{"Name": "n", "Values": ODD}]), secret="nope"
    )
    message = refused("SignatureDoesNotMatch", bad)
    assert message.startswith("The request signature we calculated does not match")
    right = re.search(r"Signature=([0-9a-f]{64})", header(good, "Authorization"))
    assert right is not None and right.group(1) not in message


def test_an_altered_body_does_not_match() -> None:
    request = boto3_sends(lambda ec2: ec2.terminate_instances(InstanceIds=["i-1"]))
    altered = dataclasses.replace(request, body=request.body.replace(b"i-1", b"i-2"))
    refused("SignatureDoesNotMatch", altered)


@pytest.mark.parametrize(
    ("name", "value"),
    [("Host", "other.example:8773"), ("Content-Type", "text/plain"), ("X-Tashi-Note", "b")],
)
def test_an_altered_signed_header_does_not_match(name: str, value: str) -> None:
    request = sign(post({"Action": "DescribeRegions"}, **{"X-Tashi-Note": "a"}))
    refused("SignatureDoesNotMatch", with_header(request, name, value))


def test_an_unsigned_header_may_change() -> None:
    request = boto3_sends(lambda ec2: ec2.describe_regions())
    assert check(with_header(request, "User-Agent", "curl/8")).access_key_id == KEY


def test_a_missing_signed_header_does_not_match_and_is_named() -> None:
    request = sign(post({"Action": "DescribeRegions"}, **{"X-Tashi-Note": "a"}))
    message = refused("SignatureDoesNotMatch", with_header(request, "X-Tashi-Note", None))
    assert "x-tashi-note" in message


@pytest.mark.parametrize(
    ("before", "after"),
    [("Action=DescribeTags", "Action=DeleteTags"), ("Version", "Version&Extra=1"), ("%2B", "+")],
)
def test_an_altered_query_does_not_match(before: str, after: str) -> None:
    for request in (sign(get(ODD_PARAMS)), sign(get(ODD_PARAMS), expires=300)):
        query = request.query_string.replace(before, after, 1)
        assert query != request.query_string
        refused("SignatureDoesNotMatch", dataclasses.replace(request, query_string=query))


@pytest.mark.parametrize("shift", [timedelta(minutes=16), timedelta(minutes=-16)])
def test_a_clock_skew_of_16_minutes_has_expired(shift: timedelta) -> None:
    message = refused(
        "RequestExpired", sign(post({"Action": "DescribeRegions"})), SIGNED_AT + shift
    )
    assert "20240305T123000Z" in message


def test_a_presigned_url_past_its_expiry_has_expired() -> None:
    request = sign(get(ODD_PARAMS), expires=300)
    message = refused("RequestExpired", request, SIGNED_AT + timedelta(seconds=301))
    assert "presigned URL signed at 20240305T123000Z expired at 20240305T123500Z" in message
    refused("RequestExpired", request, SIGNED_AT - timedelta(minutes=16))


def test_a_presigned_url_valid_longer_than_7_days_is_malformed() -> None:
    request = sign(get({"Action": "DescribeRegions"}), expires=7 * 24 * 3600 + 1)
    assert "604800" in refused("AuthFailure", request)


@pytest.mark.parametrize("expires", ["0", "-5", "abc", "%C2%B2", "1e3", "9999999"])
def test_a_presigned_url_with_a_garbled_expiry_is_malformed(expires: str) -> None:
    request = sign(get({"Action": "DescribeRegions"}), expires=300)
    query = request.query_string.replace("X-Amz-Expires=300", f"X-Amz-Expires={expires}")
    assert "X-Amz-Expires" in refused(
        "AuthFailure", dataclasses.replace(request, query_string=query)
    )


def test_an_unknown_access_key_fails_authentication() -> None:
    request = sign(post({"Action": "DescribeRegions"}))
    auth = header(request, "Authorization").replace(KEY, "AKIAUNKNOWN")
    message = refused("AuthFailure", with_header(request, "Authorization", auth))
    assert "not able to validate" in message


def test_an_unsigned_request_fails_authentication() -> None:
    request = sign(post({"Action": "DescribeRegions"}))
    message = refused("AuthFailure", with_header(request, "Authorization", None))
    assert "Authorization header" in message


def test_a_request_without_a_date_fails_authentication() -> None:
    request = sign(post({"Action": "DescribeRegions"}))
    message = refused("AuthFailure", with_header(request, "X-Amz-Date", None))
    assert "X-Amz-Date" in message


def _garble(authorization: str) -> list[str]:
    credential = f"Credential={KEY}/20240305/{REGION}/ec2/aws4_request"
    signature = authorization.rpartition("Signature=")[2]
    return [
        "garbage",
        "",
        f"AWS {KEY}:c2lnbmF0dXJl",  # Signature Version 2
        "AWS4-HMAC-SHA256",
        authorization.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512"),
        authorization.partition(", Signature=")[0],
        authorization.replace("SignedHeaders=", "Signedheaders="),
        authorization + ", Signature=" + signature,
        authorization.replace(credential, f"Credential={KEY}/20240305/{REGION}/ec2"),
        authorization.replace(credential, f"Credential=/20240305/{REGION}/ec2/aws4_request"),
        authorization.replace(signature, signature.upper()),
        authorization.replace(signature, signature[:-1]),
        authorization.replace("host;", ""),  # host must be signed
        authorization.replace(";x-amz-date", ""),  # so must the date
        authorization.replace("SignedHeaders=", "SignedHeaders=;"),
    ]


def test_a_garbled_authorization_header_fails_authentication() -> None:
    request = sign(post({"Action": "DescribeRegions"}))
    for garbled in _garble(header(request, "Authorization")):
        refused("AuthFailure", with_header(request, "Authorization", garbled))


def test_a_garbled_x_amz_date_fails_authentication() -> None:
    request = sign(post({"Action": "DescribeRegions"}))
    for garbled in (
        "2024-03-05T12:30:00Z",
        "20241305T123000Z",
        "20240305T123000",
        "\uff120240305T123000Z",  # a fullwidth digit
    ):
        assert "X-Amz-Date" in refused("AuthFailure", with_header(request, "X-Amz-Date", garbled))


@pytest.mark.parametrize(
    "name", ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Expires", "X-Amz-Signature"]
)
def test_a_presigned_url_missing_a_parameter_fails_authentication(name: str) -> None:
    request = sign(get({"Action": "DescribeRegions"}), expires=60)
    query = "&".join(p for p in request.query_string.split("&") if not p.startswith(f"{name}="))
    refused("AuthFailure", dataclasses.replace(request, query_string=query))


def test_both_forms_at_once_fail_authentication() -> None:
    presigned = sign(get({"Action": "DescribeRegions"}), expires=60)
    signed = sign(get({"Action": "DescribeRegions"}))
    both = with_header(presigned, "Authorization", header(signed, "Authorization"))
    assert "one auth mechanism" in refused("AuthFailure", both)


def test_a_security_token_fails_authentication() -> None:
    refused("AuthFailure", sign(post({"Action": "DescribeRegions"}), token="session"))
    refused("AuthFailure", sign(get({"Action": "DescribeRegions"}), token="session", expires=60))


def test_an_unsigned_payload_fails_authentication() -> None:
    request = sign(
        post({"Action": "DescribeRegions"}, **{"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    )
    assert "x-amz-content-sha256" in refused("AuthFailure", request)


def test_a_payload_hash_that_is_not_the_body_s_does_not_match() -> None:
    request = sign(post({"Action": "DescribeRegions"}, **{"X-Amz-Content-SHA256": "0" * 64}))
    assert "x-amz-content-sha256" in refused("SignatureDoesNotMatch", request)


@pytest.mark.parametrize(
    ("service", "region", "words"),
    [
        ("s3", REGION, "correct service: 'ec2'"),
        ("ec2", "us-east-1", "valid region, not 'us-east-1'"),
    ],
)
def test_a_credential_for_another_service_or_region_does_not_match(
    service: str, region: str, words: str
) -> None:
    request = sign(post({"Action": "DescribeRegions"}), service=service, region=region)
    assert words in refused("SignatureDoesNotMatch", request)


def test_a_credential_scope_dated_another_day_does_not_match() -> None:
    request = sign(post({"Action": "DescribeRegions"}))
    auth = header(request, "Authorization").replace("/20240305/", "/20240304/")
    message = refused("SignatureDoesNotMatch", with_header(request, "Authorization", auth))
    assert "'20240304' != '20240305'" in message


def test_a_credential_scope_with_another_terminator_does_not_match() -> None:
    request = sign(post({"Action": "DescribeRegions"}))
    auth = header(request, "Authorization").replace("/aws4_request", "/aws5_request")
    refused("SignatureDoesNotMatch", with_header(request, "Authorization", auth))


def test_the_secret_is_looked_up_once_and_only_for_a_well_formed_timely_request() -> None:
    asked: list[str] = []

    async def secret_of(access_key_id: str) -> str | None:
        asked.append(access_key_id)
        return SECRET

    request = sign(post({"Action": "DescribeRegions"}))
    with pytest.raises(Ec2Error):
        asyncio.run(verify(request, secret_of, SIGNED_AT + timedelta(hours=1), region=REGION))
    assert asked == []
    asyncio.run(verify(request, secret_of, SIGNED_AT, region=REGION))
    assert asked == [KEY]


def test_a_naive_now_is_a_programming_error() -> None:
    request = sign(post({"Action": "DescribeRegions"}))
    with pytest.raises(ValueError, match="timezone-aware"):
        asyncio.run(verify(request, _secret_of, datetime(2024, 3, 5, 12, 30), region=REGION))
