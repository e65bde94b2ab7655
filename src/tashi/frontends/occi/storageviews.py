"""Tashi's volumes as OCCI entities: a volume is a ``storage`` resource (``/storage/<vol-id>``),
its attachment a ``storagelink`` from its compute (``/link/storagelink/<instance>-<vol-id>``);
a link a compute was created with waits, ``inactive``, until the compute runs (``PENDING``).

Only Tashi's records are read here (no service is called), as in ``entities.py``.
"""

from __future__ import annotations

from collections.abc import Mapping

from tashi.domain.volumes import Volume, VolumeState
from tashi.frontends.occi import categories as c
from tashi.frontends.occi.entities import SUMMARY_TAG, TITLE_TAG, Entity, Value, volume_location
from tashi.frontends.occi.model import Model
from tashi.frontends.occi.usermixins import carried

V = VolumeState
#: a volume's state -> occi.storage.state (GFD.224 §3.3: online, offline, error)
STATE: Mapping[VolumeState, str] = {
    V.available: "online",
    V.attaching: "online",
    V.attached: "online",
    V.detaching: "online",
    V.creating: "offline",
    V.deleting: "offline",
    V.error: "error",
}


def storage(volume: Volume, tags: Mapping[str, str], model: Model) -> Entity:
    attrs: dict[str, Value] = {
        "occi.core.id": volume.id,
        "occi.core.title": tags.get(TITLE_TAG, volume.id),
        "occi.storage.size": volume.size,
        "occi.storage.state": STATE[volume.state],
        "occi.storage.state.message": volume.state.value
        + (f" (compute {volume.attachment.instance_id})" if volume.attachment else ""),
    }
    if SUMMARY_TAG in tags:
        attrs["occi.core.summary"] = tags[SUMMARY_TAG]
    usable = volume.state in (V.available, V.attached)
    actions = (c.STORAGE_SNAPSHOT, c.STORAGE_BACKUP) if usable else ()
    return Entity(
        c.STORAGE,
        volume.id,
        volume_location(volume.id),
        attrs,
        mixins=carried(tags, model),
        actions=actions,
    )
