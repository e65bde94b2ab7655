"""The EC2 actions Tashi serves, by noun: one handler per action, each a few lines that turn
the request's parameters into one service call and its result into the answer's members.

``HANDLERS`` maps every served action to its handler; an action AWS has and Tashi does not is
answered ``InvalidAction`` by the app (``app.py``).
"""

from __future__ import annotations

from collections.abc import Mapping

from tashi.frontends.ec2.actions import (
    attributes,
    discovery,
    imageregistry,
    images,
    instances,
    keypairs,
    lifecycle,
    secgroups,
    snapshots,
    tags,
    volumes,
)
from tashi.frontends.ec2.context import Handler

HANDLERS: Mapping[str, Handler] = {
    **discovery.HANDLERS,
    **attributes.HANDLERS,
    **images.HANDLERS,
    **imageregistry.HANDLERS,
    **instances.HANDLERS,
    **lifecycle.HANDLERS,
    **keypairs.HANDLERS,
    **tags.HANDLERS,
    **secgroups.HANDLERS,
    **volumes.HANDLERS,
    **snapshots.HANDLERS,
}
