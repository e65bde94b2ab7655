"""Made-up guests for the metadata tests: an EC2 launch with a key and user data, a createVm
instance without either."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from tashi.domain.ids import InstanceId, NetworkId, UserId
from tashi.domain.launches import Launch
from tashi.domain.models import DiskConfig, Instance, NicConfig
from tashi.domain.states import InstanceState
from tashi.nodemanager.metadata.guests import Guest, Site

SITE = Site(region="tashi-1", zone="tashi-1a", types={"t3.micro": (2, 1024)})
SINCE = datetime(2026, 12, 8, 10, 30, 0, tzinfo=UTC)
USER_DATA = b"#!/bin/sh\necho hello from user data\n"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDummyKeyForTestsOnly alice@example"


def instance(
    iid: int = 42, *, launched: bool = True, user_data: bytes | None = USER_DATA
) -> Instance:
    hints: dict[str, str] = {}
    if launched:
        launch = Launch(
            reservation="r-0123456789abcdef0",
            image="ami-0aaaaaaaaaaaaaaaa",
            instance_type="t3.micro",
            zone="tashi-1a",
            key_name="alice-key",
            user_data=base64.b64encode(user_data).decode() if user_data is not None else None,
            public_key=KEY,
        )
        hints = launch.hints()
    return Instance(
        id=InstanceId(iid),
        name=f"vm{iid}",
        user_id=UserId(7),
        state=InstanceState.Running,
        cores=2,
        memory=1024,
        disks=(DiskConfig(uri="tashi-tiny.qcow2"),),
        nics=(
            NicConfig(network=NetworkId(1), mac="52:54:00:AA:00:2A", ip="198.18.1.42"),
            NicConfig(network=NetworkId(2), mac="52:54:00:bb:00:2a"),
        ),
        hints=hints,
    )


def guest(iid: int = 42, **kwargs: object) -> Guest:
    return Guest(instance(iid, **kwargs), 0, SITE, SINCE)  # type: ignore[arg-type]
