"""The metadata service's HTTP answers, as EC2 gives them: versions, listings, leaves, user data,
the identity document, 404s, IMDSv2 tokens (TTL bounds, expiry, another instance's token) and
IMDSv1 with tokens optional or required."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tashi.nodemanager.metadata.answers import VERSIONS, Answers, Reply, Request
from tashi.nodemanager.metadata.tokens import Tokens
from tests.nodemanager.metadata.guests import KEY, USER_DATA, guest


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def answers(clock: Clock) -> Answers:
    return Answers(Tokens(b"k" * 32, clock))


def get(answers: Answers, path: str, iid: int = 42, **headers: str) -> Reply:
    named = {k.replace("_", "-").lower(): v for k, v in headers.items()}
    return answers.answer(Request("GET", path, named), guest(iid))


def text(reply: Reply) -> str:
    assert reply.status == 200, reply
    return reply.body.decode()


def token(answers: Answers, ttl: str = "60", iid: int = 42) -> str:
    headers = {"x-aws-ec2-metadata-token-ttl-seconds": ttl}
    reply = answers.answer(Request("PUT", "/latest/api/token", headers), guest(iid))
    assert reply.status == 200 and reply.hop_limit
    assert ("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", ttl) in reply.headers
    return reply.body.decode()


def test_the_root_lists_every_version_and_each_answers_as_latest(answers: Answers) -> None:
    assert text(get(answers, "/")).splitlines() == list(VERSIONS)
    for version in ("latest", "2009-04-04", "2021-03-23", "1.0"):
        assert text(get(answers, f"/{version}/")).splitlines() == [
            "dynamic/",
            "meta-data/",
            "user-data",
        ]
        assert text(get(answers, f"/{version}/meta-data/instance-id")) == "i-0000000000000002a"
    assert get(answers, "/2010-01-01/meta-data/instance-id").status == 404


def test_meta_data_lists_its_entries_directories_with_a_slash(answers: Answers) -> None:
    listing = text(get(answers, "/latest/meta-data/")).splitlines()
    assert listing == text(get(answers, "/latest/meta-data")).splitlines()
    for name in ("ami-id", "instance-id", "instance-type", "local-ipv4", "hostname", "mac"):
        assert name in listing
    assert "placement/" in listing and "public-keys/" in listing
    assert "reservation-id" in listing and "local-hostname" in listing


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("instance-id", "i-0000000000000002a"),
        ("ami-id", "ami-0aaaaaaaaaaaaaaaa"),
        ("instance-type", "t3.micro"),
        ("local-ipv4", "198.18.1.42"),
        ("hostname", "vm42"),
        ("local-hostname", "vm42"),
        ("mac", "52:54:00:aa:00:2a"),
        ("placement/availability-zone", "tashi-1a"),
        ("placement/region", "tashi-1"),
        ("reservation-id", "r-0123456789abcdef0"),
        ("public-keys/", "0=alice-key"),
        ("public-keys/0/", "openssh-key"),
        ("public-keys/0", "openssh-key"),
        ("public-keys/0/openssh-key", KEY + "\n"),
    ],
)
def test_each_leaf_and_directory(answers: Answers, path: str, value: str) -> None:
    assert text(get(answers, f"/latest/meta-data/{path}")) == value


def test_user_data_is_the_decoded_bytes_and_404_without_any(answers: Answers) -> None:
    reply = get(answers, "/latest/user-data")
    assert reply.status == 200 and reply.body == USER_DATA
    assert reply.content_type == "application/octet-stream"
    bare = guest(43, user_data=None)
    assert answers.answer(Request("GET", "/latest/user-data", {}), bare).status == 404
    assert "user-data" not in answers.answer(Request("GET", "/latest/", {}), bare).body.decode()


def test_a_createvm_instance_gets_ec2_answers_of_its_image_and_size(answers: Answers) -> None:
    bare = guest(44, launched=False)

    def read(path: str) -> str:
        return text(answers.answer(Request("GET", f"/latest/meta-data/{path}", {}), bare))

    assert read("instance-type") == "t3.micro"  # 2 cores, 1024 MB: the site's type of that size
    assert read("ami-id").startswith("ami-") and len(read("ami-id")) == 21
    assert read("reservation-id") == "r-0000000000000002c"
    assert "public-keys/" not in read("")
    assert answers.answer(Request("GET", "/latest/user-data", {}), bare).status == 404
    hinted = dataclasses.replace(bare.instance, hints={"userData": "aGVsbG8K"})
    reply = answers.answer(
        Request("GET", "/latest/user-data", {}), dataclasses.replace(bare, instance=hinted)
    )
    assert reply.status == 200 and reply.body == b"hello\n"


def test_the_identity_document_is_ec2s_json(answers: Answers) -> None:
    assert text(get(answers, "/latest/dynamic/")) == "instance-identity/"
    assert text(get(answers, "/latest/dynamic/instance-identity/")) == "document"
    document = json.loads(text(get(answers, "/latest/dynamic/instance-identity/document")))
    assert document["instanceId"] == "i-0000000000000002a"
    assert document["region"] == "tashi-1" and document["availabilityZone"] == "tashi-1a"
    assert document["accountId"] == "000000000007"
    assert document["privateIp"] == "198.18.1.42" and document["imageId"].startswith("ami-")
    assert document["pendingTime"] == "2026-12-08T10:30:00Z"
    assert document["version"] == "2017-09-30" and document["architecture"] == "x86_64"


@pytest.mark.parametrize(
    "path",
    [
        "/latest/meta-data/nothing",
        "/latest/meta-data/instance-id/more",
        "/latest/meta-data/public-keys/1/openssh-key",
        "/latest/nothing",
        "/nothing/",
        "/latest/dynamic/instance-identity/pkcs7",
    ],
)
def test_anything_else_is_404_with_ec2s_page(answers: Answers, path: str) -> None:
    reply = get(answers, path)
    assert reply.status == 404 and reply.content_type == "text/html"
    assert b"<title>404 - Not Found</title>" in reply.body


def test_a_token_lets_its_instance_in_until_its_ttl_runs_out(
    answers: Answers, clock: Clock
) -> None:
    tok = token(answers, "60")
    assert text(get(answers, "/latest/meta-data/instance-id", x_aws_ec2_metadata_token=tok))
    clock.now += 59
    assert get(answers, "/latest/meta-data/", x_aws_ec2_metadata_token=tok).status == 200
    clock.now += 2
    assert get(answers, "/latest/meta-data/", x_aws_ec2_metadata_token=tok).status == 401


@pytest.mark.parametrize("bad", ["nonsense", "a.b", "", "x" * 40 + "." + "y" * 40])
def test_a_bad_token_is_401(answers: Answers, bad: str) -> None:
    reply = get(answers, "/latest/meta-data/", x_aws_ec2_metadata_token=bad)
    assert reply.status == 401 and b"401 - Unauthorized" in reply.body


def test_another_instances_token_or_another_hosts_is_401(clock: Clock) -> None:
    here = Answers(Tokens(b"k" * 32, clock))
    theirs = token(here, iid=43)
    assert get(here, "/latest/meta-data/", x_aws_ec2_metadata_token=theirs).status == 401
    elsewhere = token(Answers(Tokens(b"o" * 32, clock)))
    assert get(here, "/latest/meta-data/", x_aws_ec2_metadata_token=elsewhere).status == 401


@pytest.mark.parametrize("ttl", [None, "0", "21601", "-5", "ten", "1.5"])
def test_a_token_request_without_a_ttl_of_1_to_21600_is_400(
    answers: Answers, ttl: str | None
) -> None:
    headers = {} if ttl is None else {"x-aws-ec2-metadata-token-ttl-seconds": ttl}
    assert answers.answer(Request("PUT", "/latest/api/token", headers), guest()).status == 400


def test_token_ttl_bounds_are_accepted(answers: Answers) -> None:
    assert token(answers, "1") and token(answers, "21600")


def test_a_token_request_through_a_proxy_is_403(answers: Answers) -> None:
    headers = {"x-aws-ec2-metadata-token-ttl-seconds": "60", "x-forwarded-for": "10.0.0.1"}
    assert answers.answer(Request("PUT", "/latest/api/token", headers), guest()).status == 403


def test_other_methods_are_405(answers: Answers) -> None:
    for method, path in [
        ("GET", "/latest/api/token"),
        ("POST", "/latest/meta-data/"),
        ("PUT", "/latest/meta-data/instance-id"),
        ("DELETE", "/latest/user-data"),
    ]:
        assert answers.answer(Request(method, path, {}), guest()).status == 405


def test_required_tokens_refuse_imdsv1(clock: Clock) -> None:
    strict = Answers(Tokens(b"k" * 32, clock), tokens_required=True)
    assert get(strict, "/latest/meta-data/instance-id").status == 401
    tok = token(strict)
    assert text(get(strict, "/latest/meta-data/instance-id", x_aws_ec2_metadata_token=tok))


def test_no_guest_no_answer(answers: Answers) -> None:
    assert answers.answer(Request("GET", "/latest/meta-data/", {}), None).status == 404
