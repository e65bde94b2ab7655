"""The EC2 Query codec (``tashi.frontends.ec2.protocol``) against botocore itself.

Requests are written by botocore's own ``EC2Serializer`` (with its full EC2 model, and its
parameter validation) and form-encoded as botocore sends them; ``parse`` must give back exactly
the parameters botocore was given. Answers written by ``render`` are read by botocore's own
``EC2QueryParser``, which must get back exactly the dict rendered. Every operation Tashi serves
is driven with a value for every member of its shapes (``Sampler``), a few by hand as AWS's
users write them, some with hypothesis; and once through an unmodified boto3 client whose HTTP
is answered in memory (its handlers base64-encode ``UserData``, add a ``ClientToken``, decode
``GetConsoleOutput``'s output).
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import itertools
import json
import re
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import botocore
import botocore.loaders
import botocore.model
import botocore.parsers
import botocore.serialize
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tashi.frontends.ec2 import model as ec2_model
from tashi.frontends.ec2 import protocol
from tashi.frontends.ec2.errors import Ec2Error

ROOT = Path(__file__).resolve().parents[2]
MODEL_JSON = ROOT / "src" / "tashi" / "frontends" / "ec2" / "model.json"
NS = "{http://ec2.amazonaws.com/doc/2016-11-15/}"
OPERATIONS = sorted(ec2_model.load().operations)


@functools.cache
def full_model() -> botocore.model.ServiceModel:
    """botocore's own EC2 model, all of it: the client's side of every test."""
    raw = botocore.loaders.create_loader().load_service_model("ec2", "service-2")
    return botocore.model.ServiceModel(raw, "ec2")


@functools.cache
def our_model() -> botocore.model.ServiceModel:
    """model.json as botocore reads it: the members the samples give values to."""
    return botocore.model.ServiceModel(json.loads(MODEL_JSON.read_text()), "ec2")


def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ec2_model", ROOT / "scripts" / "ec2_model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wire(action: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    """The form parameters botocore sends for ``params``, as a server decodes them."""
    serializer = botocore.serialize.create_serializer("ec2")  # validates params as boto3 does
    request = serializer.serialize_to_request(params, full_model().operation_model(action))
    body = urllib.parse.urlencode(list(request["body"].items()), doseq=True)
    return urllib.parse.parse_qsl(body, keep_blank_values=True, strict_parsing=True)


def read(action: str, body: bytes, status: int = 200) -> dict[str, Any]:
    """What botocore makes of an answer to ``action``."""
    parser = botocore.parsers.create_parser("ec2")
    shape = full_model().operation_model(action).output_shape
    parsed: dict[str, Any] = parser.parse(
        {"status_code": status, "headers": {}, "body": body}, shape
    )
    return parsed


def round_trip(action: str, result: dict[str, Any]) -> dict[str, Any]:
    parsed = read(action, protocol.render(action, result, "req-1"))
    assert parsed.pop("ResponseMetadata")["RequestId"] == "req-1"
    return parsed


def xml(action: str, result: dict[str, Any]) -> ET.Element:
    return ET.fromstring(protocol.render(action, result, "req-1"))


def error(action: str, params: Any) -> Ec2Error:
    with pytest.raises(Ec2Error) as caught:
        protocol.parse(action, params)
    return caught.value


# -- every operation, every member ------------------------------------------------------------


class Sampler:
    """A value for every member of a shape, each scalar a different one; lists of two items.
    Strings carry what XML must escape, a line end and non-ASCII text."""

    def __init__(self) -> None:
        self.count = itertools.count(1)

    def value(self, shape: botocore.model.Shape, name: str) -> Any:
        kind = shape.type_name
        if isinstance(shape, botocore.model.StructureShape):
            return {m: self.value(s, m) for m, s in shape.members.items()}
        if isinstance(shape, botocore.model.ListShape):
            return [self.value(shape.member, name) for _ in range(2)]
        n = next(self.count)
        low, high = shape.metadata.get("min", 0), shape.metadata.get("max", 2**31 - 1)
        scalars: dict[str, Any] = {
            "string": f"{name} {n} <&>'\"\r\n é✓",
            "integer": min(max(n, low), high),
            "long": 2**40 + n,
            "boolean": n % 2 == 0,
            "double": n + 0.25,
            "float": n + 0.5,
            "timestamp": datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=UTC) + timedelta(hours=n),
            "blob": bytes([n % 256, 0, 255]) + b"blob",
        }
        return scalars[kind]


@pytest.mark.parametrize("action", OPERATIONS)
def test_parse_gives_back_what_botocore_serialized(action: str) -> None:
    shape = our_model().operation_model(action).input_shape
    params = Sampler().value(shape, "")
    assert protocol.parse(action, wire(action, params)) == params


@pytest.mark.parametrize("action", OPERATIONS)
def test_botocore_reads_back_what_render_wrote(action: str) -> None:
    shape = our_model().operation_model(action).output_shape
    result = Sampler().value(shape, "") if shape is not None else {}
    assert round_trip(action, result) == result


# -- by hand, as AWS's users write them --------------------------------------------------------

RUN = {
    "ImageId": "ami-0123456789abcdef0",
    "InstanceType": "t3.micro",
    "MinCount": 1,
    "MaxCount": 3,
    "KeyName": "mine",
    "UserData": base64.b64encode(b"#!/bin/sh\necho hello\n").decode(),
    "SecurityGroupIds": ["sg-1", "sg-2"],
    "TagSpecifications": [
        {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "web"}]},
        {"ResourceType": "volume", "Tags": [{"Key": "a", "Value": ""}, {"Key": "b", "Value": "c"}]},
    ],
    "Placement": {"AvailabilityZone": "tashi-a"},
    "BlockDeviceMappings": [
        {"DeviceName": "/dev/vda", "Ebs": {"VolumeSize": 20, "DeleteOnTermination": True}},
        {"DeviceName": "/dev/vdb", "Ebs": {"SnapshotId": "snap-1", "DeleteOnTermination": False}},
    ],
    "ClientToken": "token-1",
    "DryRun": False,
}


def test_run_instances_request() -> None:
    sent = dict(wire("RunInstances", RUN))
    assert sent["TagSpecification.2.Tag.1.Key"] == "a"
    assert sent["BlockDeviceMapping.1.Ebs.VolumeSize"] == "20"
    assert sent["Placement.AvailabilityZone"] == "tashi-a"
    assert sent["SecurityGroupId.2"] == "sg-2"
    assert sent["DryRun"] == "false"
    assert protocol.parse("RunInstances", sent) == RUN


def test_describe_instances_request() -> None:
    params = {
        "InstanceIds": ["i-1", "i-2"],
        "Filters": [
            {"Name": "instance-state-name", "Values": ["running", "stopped"]},
            {"Name": "tag:Name", "Values": ["web"]},
        ],
        "MaxResults": 5,
        "NextToken": "abc",
    }
    sent = dict(wire("DescribeInstances", params))
    assert sent["Filter.1.Value.2"] == "stopped"
    assert sent["InstanceId.1"] == "i-1"
    assert protocol.parse("DescribeInstances", sent) == params


LAUNCHED = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def instance(n: int) -> dict[str, Any]:
    return {
        "InstanceId": f"i-{n:017x}",
        "ImageId": "ami-1",
        "State": {"Code": 16, "Name": "running"},
        "PrivateDnsName": "vm1.tashi",
        "InstanceType": "t3.micro",
        "LaunchTime": LAUNCHED,
        "Placement": {"AvailabilityZone": "tashi-a", "Tenancy": "default"},
        "PrivateIpAddress": "10.0.0.5",
        "SecurityGroups": [{"GroupName": "default", "GroupId": "sg-1"}],
        "Tags": [{"Key": "Name", "Value": "web & db"}],
        "BlockDeviceMappings": [],
        "EbsOptimized": False,
        "Monitoring": {"State": "disabled"},
        "AmiLaunchIndex": n,
    }


def test_run_instances_answer() -> None:
    result = {
        "ReservationId": "r-1",
        "OwnerId": "7",
        "Groups": [],
        "Instances": [instance(0), instance(1)],
    }
    assert round_trip("RunInstances", result) == result
    root = xml("RunInstances", result)
    assert root.tag == f"{NS}RunInstancesResponse"
    assert root.findtext(f"{NS}requestId") == "req-1"
    ids = root.findall(f"{NS}instancesSet/{NS}item/{NS}instanceId")
    assert [i.text for i in ids] == ["i-00000000000000000", "i-00000000000000001"]
    assert root.findtext(f"{NS}instancesSet/{NS}item/{NS}launchTime") == "2026-01-02T03:04:05.678Z"


def test_describe_instances_answer() -> None:
    result = {
        "Reservations": [
            {"ReservationId": "r-1", "OwnerId": "7", "Instances": [instance(0)]},
            {"ReservationId": "r-2", "OwnerId": "7", "Instances": [instance(1), instance(2)]},
        ],
        "NextToken": "next",
    }
    assert round_trip("DescribeInstances", result) == result
    root = xml("DescribeInstances", result)
    path = f"{NS}reservationSet/{NS}item/{NS}instancesSet/{NS}item"
    assert len(root.findall(path)) == 3
    assert root.findtext(f"{path}/{NS}instanceState/{NS}code") == "16"
    assert root.findtext(f"{path}/{NS}tagSet/{NS}item/{NS}value") == "web & db"
    assert root.findtext(f"{path}/{NS}ebsOptimized") == "false"


def test_describe_images_answer() -> None:
    result = {
        "Images": [
            {
                "ImageId": "ami-1",
                "ImageLocation": "debian-12.qcow2",
                "State": "available",
                "OwnerId": "7",
                "Public": True,
                "Architecture": "x86_64",
                "ImageType": "machine",
                "Name": "debian-12",
                "RootDeviceType": "ebs",
                "RootDeviceName": "/dev/vda",
                "BlockDeviceMappings": [
                    {"DeviceName": "/dev/vda", "Ebs": {"VolumeSize": 8, "VolumeType": "standard"}}
                ],
                "VirtualizationType": "hvm",
                "Hypervisor": "xen",
                "CreationDate": "2026-01-02T03:04:05.000Z",
                "Tags": [],
            }
        ]
    }
    assert round_trip("DescribeImages", result) == result
    root = xml("DescribeImages", result)
    item = f"{NS}imagesSet/{NS}item"
    assert root.findtext(f"{item}/{NS}isPublic") == "true"
    assert root.findtext(f"{item}/{NS}blockDeviceMapping/{NS}item/{NS}ebs/{NS}volumeSize") == "8"


def test_describe_security_groups_answer() -> None:
    rule = {
        "IpProtocol": "tcp",
        "FromPort": 22,
        "ToPort": 22,
        "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "ssh"}],
        "UserIdGroupPairs": [{"GroupId": "sg-2", "UserId": "7"}],
        "Ipv6Ranges": [],
        "PrefixListIds": [],
    }
    result = {
        "SecurityGroups": [
            {
                "GroupId": "sg-1",
                "GroupName": "web",
                "Description": "web <servers>",
                "OwnerId": "7",
                "IpPermissions": [rule, {**rule, "IpProtocol": "-1", "FromPort": -1}],
                "IpPermissionsEgress": [],
            }
        ]
    }
    assert round_trip("DescribeSecurityGroups", result) == result
    root = xml("DescribeSecurityGroups", result)
    item = f"{NS}securityGroupInfo/{NS}item"
    assert root.findtext(f"{item}/{NS}groupDescription") == "web <servers>"
    perm = f"{item}/{NS}ipPermissions/{NS}item"
    assert root.findtext(f"{perm}/{NS}ipRanges/{NS}item/{NS}cidrIp") == "0.0.0.0/0"
    assert root.findtext(f"{perm}/{NS}groups/{NS}item/{NS}groupId") == "sg-2"


def test_describe_volumes_answer() -> None:
    result = {
        "Volumes": [
            {
                "VolumeId": "vol-1",
                "Size": 10,
                "SnapshotId": "",
                "AvailabilityZone": "tashi-a",
                "State": "in-use",
                "CreateTime": LAUNCHED,
                "Attachments": [
                    {
                        "VolumeId": "vol-1",
                        "InstanceId": "i-1",
                        "Device": "/dev/vdb",
                        "State": "attached",
                        "AttachTime": LAUNCHED,
                        "DeleteOnTermination": False,
                    }
                ],
                "VolumeType": "standard",
                "Encrypted": False,
            }
        ]
    }
    assert round_trip("DescribeVolumes", result) == result
    root = xml("DescribeVolumes", result)
    item = f"{NS}volumeSet/{NS}item"
    assert root.findtext(f"{item}/{NS}attachmentSet/{NS}item/{NS}device") == "/dev/vdb"
    assert root.findtext(f"{item}/{NS}snapshotId") == ""


def test_describe_account_attributes_answer() -> None:
    result = {
        "AccountAttributes": [
            {
                "AttributeName": "supported-platforms",
                "AttributeValues": [{"AttributeValue": "VPC"}],
            },
            {"AttributeName": "max-instances", "AttributeValues": [{"AttributeValue": "20"}]},
        ]
    }
    assert round_trip("DescribeAccountAttributes", result) == result
    root = xml("DescribeAccountAttributes", result)
    item = f"{NS}accountAttributeSet/{NS}item"
    assert root.findtext(f"{item}/{NS}attributeValueSet/{NS}item/{NS}attributeValue") == "VPC"


def test_describe_regions_and_zones_answer() -> None:
    regions = {
        "Regions": [
            {"RegionName": "tashi", "Endpoint": "ec2.tashi", "OptInStatus": "opt-in-not-required"}
        ]
    }
    assert round_trip("DescribeRegions", regions) == regions
    assert xml("DescribeRegions", regions).findtext(f"{NS}regionInfo/{NS}item/{NS}regionName")
    zones = {
        "AvailabilityZones": [
            {"ZoneName": "tashi-a", "State": "available", "RegionName": "tashi", "Messages": []}
        ]
    }
    assert round_trip("DescribeAvailabilityZones", zones) == zones
    root = xml("DescribeAvailabilityZones", zones)
    assert root.findtext(f"{NS}availabilityZoneInfo/{NS}item/{NS}zoneState") == "available"


def test_describe_instance_types_answer() -> None:
    result = {
        "InstanceTypes": [
            {
                "InstanceType": "t3.nano",
                "CurrentGeneration": True,
                "SupportedUsageClasses": ["on-demand"],
                "VCpuInfo": {"DefaultVCpus": 2, "DefaultCores": 1, "ValidCores": [1, 2]},
                "MemoryInfo": {"SizeInMiB": 512},
                "ProcessorInfo": {
                    "SupportedArchitectures": ["x86_64"],
                    "SustainedClockSpeedInGhz": 2.5,
                },
                "NetworkInfo": {"NetworkPerformance": "Low", "MaximumNetworkInterfaces": 1},
                "Hypervisor": "nitro",
            }
        ]
    }
    assert round_trip("DescribeInstanceTypes", result) == result
    root = xml("DescribeInstanceTypes", result)
    item = f"{NS}instanceTypeSet/{NS}item"
    assert root.findtext(f"{item}/{NS}memoryInfo/{NS}sizeInMiB") == "512"
    assert root.findtext(f"{item}/{NS}vCpuInfo/{NS}validCores/{NS}item") == "1"


def test_an_action_without_an_answer_says_return_true() -> None:
    body = protocol.render("RebootInstances", {}, "req-1")
    assert ET.fromstring(body).findtext(f"{NS}return") == "true"
    assert read("RebootInstances", body) == {
        "ResponseMetadata": {"RequestId": "req-1", "HTTPStatusCode": 200, "HTTPHeaders": {}}
    }


# -- errors ---------------------------------------------------------------------------------


def test_botocore_reads_render_error_as_a_client_error() -> None:
    body = protocol.render_error(
        "InvalidInstanceID.NotFound", "The instance 'i-1' <&> is gone", "r9"
    )
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    parsed = read("TerminateInstances", body, status=400)
    assert parsed["Error"] == {
        "Code": "InvalidInstanceID.NotFound",
        "Message": "The instance 'i-1' <&> is gone",
    }
    assert parsed["ResponseMetadata"]["RequestId"] == "r9"


def test_unknown_and_unserved_actions() -> None:
    err = error("LaunchRockets", {})
    assert (err.code, err.message, err.status) == (
        "InvalidAction",
        "The action LaunchRockets is not valid for this web service.",
        400,
    )
    assert error("DescribeVpcs", {}).code == "UnsupportedOperation"
    with pytest.raises(Ec2Error):
        protocol.render("LaunchRockets", {}, "r")


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"Foo": "1"}, "Foo"),
        ({"Filter.1.Nmae": "x"}, "Filter.1.Nmae"),
        ({"InstanceId.1.Extra": "x"}, "InstanceId.1.Extra"),
        ({"MaxResults.1": "5"}, "MaxResults.1"),
        ({"Filter..Name": "x"}, "Filter..Name"),
        ({"instanceId.1": "i-1"}, "instanceId"),
    ],
)
def test_unknown_parameters(params: dict[str, str], name: str) -> None:
    err = error("DescribeInstances", params)
    assert (err.code, err.message) == (
        "UnknownParameter",
        f"The parameter {name} is not recognized",
    )


@pytest.mark.parametrize(
    ("action", "params", "name"),
    [
        ("RunInstances", {"MaxCount": "1"}, "MinCount"),
        ("TerminateInstances", {"DryRun": "true"}, "InstanceId"),
        ("CreateTags", {"ResourceId.1": "i-1"}, "Tag"),
        ("AttachVolume", {"VolumeId": "vol-1", "InstanceId": "i-1"}, "Device"),
    ],
)
def test_missing_parameters(action: str, params: dict[str, str], name: str) -> None:
    err = error(action, params)
    assert (err.code, err.message) == (
        "MissingParameter",
        f"The request must contain the parameter {name}",
    )


@pytest.mark.parametrize(
    ("action", "params"),
    [
        ("RunInstances", {"MinCount": "one", "MaxCount": "1"}),
        ("RunInstances", {"MinCount": "1.0", "MaxCount": "1"}),
        ("RunInstances", {"MinCount": "2147483648", "MaxCount": "1"}),
        ("RunInstances", {"MinCount": "1", "MaxCount": "1", "DryRun": "yes"}),
        ("RunInstances", {"MinCount": "1", "MaxCount": "1", "Placement": "tashi-a"}),
        ("TerminateInstances", {"InstanceId": "i-1"}),
        ("TerminateInstances", {"InstanceId.0": "i-1"}),
        ("TerminateInstances", {"InstanceId.-1": "i-1"}),
        ("TerminateInstances", {"InstanceId.01": "i-1"}),
        ("TerminateInstances", {"InstanceId.first": "i-1"}),
        ("TerminateInstances", {"InstanceId.1": "i-\x01"}),
        ("DescribeInstanceTypes", {"MaxResults": "4"}),
        ("DescribeInstanceTypes", {"MaxResults": "101"}),
        ("DescribeInstanceTypes", {f"InstanceType.{n}": "t3.nano" for n in range(1, 102)}),
        ("DescribeSecurityGroups", {"MaxResults": "1001"}),
        ("ImportKeyPair", {"KeyName": "k", "PublicKeyMaterial": "not base64!"}),
    ],
)
def test_invalid_parameter_values(action: str, params: dict[str, str]) -> None:
    assert error(action, params).code == "InvalidParameterValue"


def test_a_parameter_given_twice_is_refused() -> None:
    pairs = [("InstanceId.1", "i-1"), ("InstanceId.1", "i-2")]
    assert error("TerminateInstances", pairs).code == "InvalidParameterValue"


def test_list_items_follow_their_indexes_not_the_order_given() -> None:
    pairs = [("InstanceId.10", "c"), ("InstanceId.3", "b"), ("InstanceId.1", "a")]
    assert protocol.parse("TerminateInstances", pairs) == {"InstanceIds": ["a", "b", "c"]}


def test_common_and_signature_parameters_are_skipped() -> None:
    params = {
        "Action": "TerminateInstances",
        "Version": "2016-11-15",
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Signature": "ab",
        "InstanceId.1": "i-1",
        "DryRun": "TRUE",
    }
    assert protocol.parse("TerminateInstances", params) == {"InstanceIds": ["i-1"], "DryRun": True}


def test_timestamps_in_any_iso_8601_form() -> None:
    def valid_until(text: str) -> Any:
        params = {"MinCount": "1", "MaxCount": "1"}
        params["InstanceMarketOptions.SpotOptions.ValidUntil"] = text
        parsed = protocol.parse("RunInstances", params)
        return parsed["InstanceMarketOptions"]["SpotOptions"]["ValidUntil"]

    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert valid_until("2026-01-02T03:04:05Z") == moment
    assert valid_until("2026-01-02T05:04:05+02:00").tzinfo == UTC
    assert valid_until("2026-01-02T03:04:05") == moment
    with pytest.raises(Ec2Error, match="ISO 8601"):
        valid_until("tomorrow")


def test_render_refuses_what_does_not_fit_the_shape() -> None:
    bad: list[tuple[str, dict[str, Any]]] = [
        ("DescribeRegions", {"Regions": [{"RegionName": "x", "Colour": "red"}]}),
        ("DescribeRegions", {"Regions": {"RegionName": "x"}}),
        ("DescribeRegions", {"Regions": [None]}),
        ("DescribeVolumes", {"Volumes": [{"Size": "10"}]}),
        ("DescribeVolumes", {"Volumes": [{"Size": True}]}),
        ("DescribeVolumes", {"Volumes": [{"Encrypted": 1}]}),
        ("DescribeVolumes", {"Volumes": [{"CreateTime": datetime(2026, 1, 1)}]}),
        ("DescribeVolumes", {"Volumes": [{"VolumeId": 5}]}),
        ("RebootInstances", {"Return": True}),
        ("DescribeRegions", {"Regions": [{"Colour": None}]}),
        ("DescribeRegions", {"ResponseMetadata": {}}),
    ]
    for action, result in bad:
        with pytest.raises(TypeError):
            protocol.render(action, result, "r")


def test_render_leaves_out_none_and_keeps_text_botocore_can_read() -> None:
    result = {"Regions": [{"RegionName": "a\r\nb\x00c\ud800", "Endpoint": None}]}
    assert round_trip("DescribeRegions", result) == {
        "Regions": [{"RegionName": "a\r\nb\ufffdc\ufffd"}]
    }


# -- through boto3 itself ------------------------------------------------------------------


class Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        yield self.body


@pytest.fixture
def ec2() -> tuple[Any, list[dict[str, Any]], dict[str, Any]]:
    """A boto3 EC2 client whose requests ``parse`` reads (into ``seen``) and whose answers
    ``render`` writes from ``answers[action]`` (an ``Ec2Error`` is answered as an error)."""
    client = boto3.client(
        "ec2",
        region_name="tashi",
        endpoint_url="http://ec2.tashi.invalid:8773",
        aws_access_key_id="AKIDTASHI",
        aws_secret_access_key="secret",
    )
    seen: list[dict[str, Any]] = []
    answers: dict[str, Any] = {}

    def send(request: Any, **kwargs: Any) -> AWSResponse:
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        pairs = urllib.parse.parse_qsl(body, keep_blank_values=True)
        action = dict(pairs)["Action"]
        seen.append(protocol.parse(action, pairs))
        answer = answers.get(action, {})
        if isinstance(answer, Ec2Error):
            error = protocol.render_error(answer.code, answer.message, "req-2")
            return AWSResponse(request.url, answer.status, {}, Raw(error))
        return AWSResponse(request.url, 200, {}, Raw(protocol.render(action, answer, "req-2")))

    client.meta.events.register("before-send.ec2", send)
    return client, seen, answers


def test_boto3_run_instances(ec2: tuple[Any, list[dict[str, Any]], dict[str, Any]]) -> None:
    client, seen, answers = ec2
    answers["RunInstances"] = {"ReservationId": "r-1", "OwnerId": "7", "Instances": [instance(0)]}
    got = client.run_instances(
        ImageId="ami-1", MinCount=1, MaxCount=1, UserData="#!/bin/sh\necho hi\n"
    )
    assert got["Instances"][0]["LaunchTime"] == LAUNCHED
    (sent,) = seen
    assert base64.b64decode(sent["UserData"]) == b"#!/bin/sh\necho hi\n"
    assert re.fullmatch(r"[0-9a-f-]{36}", sent["ClientToken"])  # botocore's idempotency token


def test_boto3_console_output_and_errors(
    ec2: tuple[Any, list[dict[str, Any]], dict[str, Any]],
) -> None:
    client, _, answers = ec2
    text = "Booting Tashi guest…\r\nlogin: "
    answers["GetConsoleOutput"] = {
        "InstanceId": "i-1",
        "Output": base64.b64encode(text.encode()).decode(),
        "Timestamp": LAUNCHED,
    }
    assert client.get_console_output(InstanceId="i-1")["Output"] == text
    answers["TerminateInstances"] = Ec2Error("InvalidInstanceID.NotFound", "No such instance i-9")
    with pytest.raises(ClientError) as caught:
        client.terminate_instances(InstanceIds=["i-9"])
    assert caught.value.response["Error"]["Code"] == "InvalidInstanceID.NotFound"
    assert caught.value.response["ResponseMetadata"]["RequestId"] == "req-2"


# -- hypothesis: random values of the shapes -------------------------------------------------

_XML_CHAR = st.characters(exclude_categories=("Cs",)).filter(
    lambda c: not re.match("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]", c)
)
_MS = st.datetimes(datetime(1970, 1, 1), datetime(2200, 1, 1), timezones=st.just(UTC)).map(
    lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)
)


def values(shape: botocore.model.Shape) -> st.SearchStrategy[Any]:
    """Any value of ``shape`` botocore accepts and the EC2 wire carries (lists of 1 to 3
    items: an empty list or structure is not sent at all in a request)."""
    if isinstance(shape, botocore.model.StructureShape):
        required = set(shape.required_members)
        members = {m: values(s) for m, s in shape.members.items()}
        return st.fixed_dictionaries(
            {m: s for m, s in members.items() if m in required},
            optional={m: s for m, s in members.items() if m not in required},
        ).filter(bool)
    if isinstance(shape, botocore.model.ListShape):
        return st.lists(values(shape.member), min_size=1, max_size=3)
    low, high = shape.metadata.get("min", -(2**31)), shape.metadata.get("max", 2**31 - 1)
    scalars: dict[str, st.SearchStrategy[Any]] = {
        "string": st.text(_XML_CHAR, max_size=12),
        "integer": st.integers(low, high),
        "long": st.integers(-(2**63), 2**63 - 1),
        "boolean": st.booleans(),
        "double": st.floats(allow_nan=False),
        "float": st.floats(allow_nan=False),
        "timestamp": _MS,
        "blob": st.binary(max_size=12),
    }
    return scalars[shape.type_name]


_SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("action", ["RunInstances", "DescribeInstances", "CreateTags"])
def test_parse_any_request(action: str) -> None:
    @_SETTINGS
    @given(values(our_model().operation_model(action).input_shape))
    def check(params: dict[str, Any]) -> None:
        assert protocol.parse(action, wire(action, params)) == params

    check()


@pytest.mark.parametrize(
    "action", ["DescribeInstances", "DescribeSecurityGroups", "DescribeInstanceTypes"]
)
def test_render_any_answer(action: str) -> None:
    @_SETTINGS
    @given(values(our_model().operation_model(action).output_shape))
    def check(result: dict[str, Any]) -> None:
        assert round_trip(action, result) == result

    check()


# -- the model ----------------------------------------------------------------------------------


def test_model_json_serves_the_scripts_operations_and_is_its_output() -> None:
    ec2_model_script = script()
    model = ec2_model.load()
    assert set(model.operations) == set(ec2_model_script.OPERATIONS)
    assert model is ec2_model.load()  # read once
    assert model.api_version == "2016-11-15"
    recorded = json.loads(MODEL_JSON.read_text())["metadata"]["botocoreVersion"]
    if recorded != botocore.__version__:
        pytest.skip(f"model.json is from botocore {recorded}; run scripts/ec2_model.py")
    full = botocore.loaders.create_loader().load_service_model("ec2", "service-2")
    built = ec2_model_script.build(full, botocore.__version__)
    assert ec2_model_script.dumps(built) == MODEL_JSON.read_text()


def test_every_shape_of_ec2_is_one_the_protocol_reads() -> None:
    full = botocore.loaders.create_loader().load_service_model("ec2", "service-2")
    assert len(ec2_model.from_json(full).operations) > 700


def test_wire_names() -> None:
    shapes = ec2_model.load().shapes
    nic = shapes["InstanceNetworkInterfaceSpecification"].members["PrivateIpAddresses"]
    assert (nic.query_name, nic.xml_name) == ("PrivateIpAddresses", "privateIpAddressesSet")
    types = shapes["DescribeInstanceTypesRequest"].members["InstanceTypes"]
    assert (types.query_name, types.shape.max) == ("InstanceType", 100)
    assert shapes["KeyPair"].members["KeyMaterial"].shape.sensitive
    for op in ec2_model.load().operations.values():  # what parse skips is no operation's
        assert op.input is not None
        names = set(op.input.by_query_name)
        assert not names & protocol.COMMON_PARAMETERS
        assert not {n for n in names if n.startswith(protocol.SIGV4_PREFIX)}
