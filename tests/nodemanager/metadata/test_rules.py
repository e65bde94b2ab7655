"""The nftables text of the metadata steering: what each NIC's transaction holds, and names that
cannot be written into a rule are refused (the kernel's own test is test_kernel.py)."""

from __future__ import annotations

import pytest

from tashi.nodemanager.metadata import rules
from tashi.nodemanager.metadata.rules import Nic

NIC = Nic(3, "tashi42.0", "52:54:00:00:00:2a")


def test_a_nic_is_steered_in_and_answered_out_by_its_mark() -> None:
    text = rules.add(NIC)
    assert 'hook ingress device "tashi42.0" priority -500' in text
    assert (
        "ip daddr 169.254.169.254 tcp dport 80 meta mark set 0x74610003"
        ' ether daddr set 02:a9:fe:a9:fe:01 fwd to "tashi-mdp"'
    ) in text
    assert "add rule netdev tashi-metadata in3 ip daddr 169.254.169.254 drop" in text
    assert 'out3 ether daddr set 52:54:00:00:00:2a fwd to "tashi42.0"' in text
    assert "replies { 0x74610003 : jump out3 }" in text
    assert rules.slot_of(NIC.mark) == 3 and rules.slot_of(0) is None and rules.slot_of(5) is None


def test_removal_undoes_exactly_the_nic() -> None:
    text = rules.remove(NIC)
    assert "delete element netdev tashi-metadata replies { 0x74610003 }" in text
    assert text.count("delete chain") == 2 and "in3" in text and "out3" in text


def test_a_reset_makes_the_table_anew_in_one_transaction() -> None:
    text = rules.reset([NIC, Nic(4, "tashi43.0", "52:54:00:00:00:2b")])
    assert text.index("delete table netdev tashi-metadata") < text.index("map replies")
    assert 'device "tashi-mdp" priority -500; policy drop;' in text
    assert "in3" in text and "in4" in text


@pytest.mark.parametrize("name", ['evil"; flush ruleset; "', "a b", ""])
def test_a_name_nftables_would_misread_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="cannot be named"):
        rules.add(Nic(1, name, "52:54:00:00:00:01"))
