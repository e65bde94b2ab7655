"""A live virtual cluster (``tashi-cluster``: a cluster manager, its scheduler and two QEMU
hosts) whose EC2 API unmodified boto3 and the AWS CLI drive, as users ``alice`` and ``bob``,
each with an access key made through the ``tashi`` client's API, and the admin with one too.
Its image store has the tiny guest and the Debian cloud-init guest (``make debian-image``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tashi.api.schemas import UserIn
from tashi.devcluster.harness import Running, ha_options, running_cluster

# TASHI_TEST_EC2_FABRIC: another fabric, for a second run of these tests beside a first
FABRIC = os.environ.get("TASHI_TEST_EC2_FABRIC", "198.18.208.0/20")
REGION = "tashi-1"
EC2_PORT = 8773


@dataclass(frozen=True)
class Key:
    access_key_id: str
    secret: str


@dataclass
class Ec2Cluster:
    running: Running
    endpoint: str
    keys: dict[str, Key]

    def client(self, who: str, **overrides: Any) -> Any:
        key = self.keys[who]
        return boto3.client(
            "ec2",
            endpoint_url=self.endpoint,
            region_name=overrides.pop("region_name", REGION),
            aws_access_key_id=overrides.pop("aws_access_key_id", key.access_key_id),
            aws_secret_access_key=overrides.pop("aws_secret_access_key", key.secret),
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
            **overrides,
        )

    def aws_env(self, who: str) -> dict[str, str]:
        key = self.keys[who]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TASHI_"))}
        env.update(
            AWS_ACCESS_KEY_ID=key.access_key_id,
            AWS_SECRET_ACCESS_KEY=key.secret,
            AWS_DEFAULT_REGION=REGION,
            AWS_CONFIG_FILE="/dev/null",
            AWS_SHARED_CREDENTIALS_FILE="/dev/null",
            AWS_RETRY_MODE="standard",
            AWS_MAX_ATTEMPTS="1",
        )
        return env


@pytest.fixture(scope="package")
def ec2(
    tmp_path_factory: pytest.TempPathFactory, tiny_image: Path, debian_image: Path
) -> Iterator[Ec2Cluster]:
    if os.geteuid() != 0:
        pytest.fail("the EC2 tests run a virtual cluster: run them as root")
    options = ha_options(FABRIC, tiny_image, hostMemory=2048, images=debian_image)
    with running_cluster(tmp_path_factory.mktemp("ec2"), 2, options) as running:
        admin = running.admin
        keys: dict[str, Key] = {}
        for name in ("alice", "bob"):
            admin.register_user(UserIn(name=name, password=f"{name}-password-1"))
            made = admin.create_access_key(name)
            assert made.secretAccessKey is not None
            keys[name] = Key(made.accessKeyId, made.secretAccessKey)
        mine = admin.create_access_key()
        assert mine.secretAccessKey is not None
        keys["admin"] = Key(mine.accessKeyId, mine.secretAccessKey)
        endpoint = f"http://{running.plan.cm_address}:{EC2_PORT}"
        yield Ec2Cluster(running, endpoint, keys)
