"""A guest reads the names of its security groups in its metadata (``meta-data/security-groups``,
one a line, as EC2's), whichever way it joined them; a guest in none has no such entry."""

from __future__ import annotations

from dataclasses import replace

from tashi.domain.secgroups import launched_in
from tashi.nodemanager.metadata import tree
from tashi.nodemanager.metadata.guests import Guest
from tests.nodemanager.metadata.guests import SINCE, SITE, instance


def _guest(hints: dict[str, str]) -> Guest:
    base = instance(42)
    return Guest(replace(base, hints={**base.hints, **hints}), 0, SITE, SINCE)


def test_the_metadata_lists_the_guests_groups() -> None:
    groups = launched_in([("sg-0123456789abcdef0", "default"), ("sg-0123456789abcdef1", "web")])
    meta = tree.meta_data(_guest(groups))
    assert meta["security-groups"] == "default\nweb"
    hinted = tree.meta_data(_guest({"securityGroups": "sg-0123456789abcdef1"}))
    assert hinted["security-groups"] == "sg-0123456789abcdef1"  # joined by id: named by it
    assert "security-groups" not in tree.meta_data(_guest({}))
    assert "security-groups" in tree.listing(meta).splitlines()
