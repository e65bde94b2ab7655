"""What the EC2 API launched an instance with: kept as Tashi's own hints, carried to the node
that runs it (for its guest's metadata), and never out of the user's ``--hints``."""

from __future__ import annotations

import pytest

from tashi.domain.errors import InvalidInput
from tashi.domain.ids import InstanceId, NetworkId, UserId
from tashi.domain.launches import Launch
from tashi.domain.models import DiskConfig, Instance, NicConfig
from tashi.domain.states import InstanceState
from tashi.domain.validation import hints as user_hints
from tashi.nodeapi.convert import instance, instance_wire

LAUNCH = Launch(
    reservation="r-0123456789abcdef0",
    image="ami-0123456789abcdef0",
    instance_type="t3.micro",
    zone="tashi-1a",
    key_name="mine",
    client_token="token-1",
    user_data="IyEvYmluL3NoCmVjaG8gaGk=",
    public_key="ssh-ed25519 AAAAC3Nza mine",
    tags={"Name": "web 1", "role": "web"},
)


def test_a_launch_reads_back_from_its_hints() -> None:
    hints = {"user": "kept", **LAUNCH.hints()}
    assert Launch.of(hints) == LAUNCH
    assert Launch.of({"user": "kept"}) is None
    assert all(k.startswith("__") for k in LAUNCH.hints())


def test_the_node_gets_the_launch_but_no_other_own_hint() -> None:
    inst = Instance(
        id=InstanceId(42),
        name="r-0123456789abcdef0",
        user_id=UserId(3),
        state=InstanceState.Activating,
        cores=1,
        memory=128,
        disks=(DiskConfig("tashi-tiny.qcow2"),),
        nics=(NicConfig(NetworkId(1), "52:54:00:00:00:01"),),
        hints={"user": "kept", "__group_start": "abc", **LAUNCH.hints()},
    )
    wire = instance_wire(inst)
    assert wire.hints == {"user": "kept"}
    assert wire.launch["type"] == "t3.micro" and "__group_start" not in wire.launch
    assert Launch.of(instance(wire).hints) == LAUNCH


def test_users_cannot_write_launch_hints() -> None:
    with pytest.raises(InvalidInput):
        user_hints({"__ec2.userdata": "x"})


def test_every_tashi_state_has_an_ec2_state() -> None:
    from tashi.frontends.ec2.instanceviews import STATES

    assert set(STATES) == set(InstanceState)
