"""The boto3 EC2 client both parts of ``python -m bench ec2`` drive Tashi's EC2 API with
(``ec2launch.py`` on a virtual cluster, ``ec2describe.py`` on a lone cluster manager): region
``tashi-1``, no retries (a failure is reported, not hidden), and a timeout of its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config

Say = Callable[[str], None]
REGION = "tashi-1"
EC2_PORT = 8773  # [Ec2] port's default: the virtual cluster's cluster manager listens there


def ec2_client(endpoint: str, key_id: str, secret: str, timeout: float = 120.0) -> Any:
    return boto3.client(
        "ec2",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=timeout,
            read_timeout=timeout,
        ),
    )
