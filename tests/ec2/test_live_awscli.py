"""The AWS CLI, unmodified (``aws ec2 … --endpoint-url``), against a live virtual cluster: what
docs/ec2.md's walk-through runs, with AWS's output and exit statuses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.ec2.conftest import Ec2Cluster

AWS = Path(sys.executable).parent / "aws"


def aws(ec2: Ec2Cluster, who: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AWS), "--endpoint-url", ec2.endpoint, "--output", "json", "ec2", *argv],
        env=ec2.aws_env(who),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ok(ec2: Ec2Cluster, who: str, *argv: str) -> Any:
    done = aws(ec2, who, *argv)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def test_the_walk_through(ec2: Ec2Cluster) -> None:
    zones = ok(ec2, "alice", "describe-availability-zones")["AvailabilityZones"]
    assert zones[0]["ZoneName"] == "tashi-1a"
    images = ok(ec2, "alice", "describe-images", "--filters", "Name=name,Values=tashi-tiny*")
    ami = images["Images"][0]["ImageId"]
    made = ok(
        ec2,
        "alice",
        "run-instances",
        "--image-id",
        ami,
        "--instance-type",
        "tashi.tiny",
        "--count",
        "1",
        "--tag-specifications",
        "ResourceType=instance,Tags=[{Key=Name,Value=cli-1}]",
    )
    iid = made["Instances"][0]["InstanceId"]
    assert aws(ec2, "alice", "wait", "instance-running", "--instance-ids", iid).returncode == 0
    listed = ok(
        ec2,
        "alice",
        "describe-instances",
        "--filters",
        "Name=tag:Name,Values=cli-1",
        "--query",
        "Reservations[].Instances[].[InstanceId,State.Name]",
    )
    assert listed == [[iid, "running"]]
    ok(ec2, "alice", "terminate-instances", "--instance-ids", iid)
    assert aws(ec2, "alice", "wait", "instance-terminated", "--instance-ids", iid).returncode == 0


def test_errors_come_back_as_aws_errors_with_a_failing_status(ec2: Ec2Cluster) -> None:
    done = aws(ec2, "bob", "describe-instances", "--instance-ids", "i-0123456789abcdef0")
    assert done.returncode == 255  # aws-cli v1: a service error (v2 says 254)
    assert "InvalidInstanceID.NotFound" in done.stderr
    done = aws(ec2, "bob", "describe-vpcs")
    assert done.returncode == 255  # aws-cli v1: a service error (v2 says 254)
    assert "UnsupportedOperation" in done.stderr
