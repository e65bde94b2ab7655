"""What every OCCI handler gets: the services, the instance-type table, the defaults of a
compute that names no template, and who the caller is (``caller``: HTTP Basic with a Tashi
user's password, or the bearer token the REST API gives).

Built once by the composition root (``daemons/cm.py``, tests) from ``[OCCI]`` and
``[InstanceTypes]``; a bad line stops the cluster manager at start-up. The users' own mixins
are read then from the cluster manager's state directory (``mixinfile.py``). Basic credentials are
turned into a token of the REST API by a login (throttled like every login) and the token is
kept, so a client sending its password on every request does not make a token per request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tashi.clustermanager.service import ClusterService
from tashi.config.ec2 import InstanceTypesSettings
from tashi.config.occi import OcciSettings
from tashi.domain import instancetypes
from tashi.domain.errors import InvalidInput, NotAuthenticated
from tashi.domain.instancetypes import InstanceType
from tashi.domain.models import Principal
from tashi.frontends.occi import mixinfile
from tashi.frontends.occi.model import Model
from tashi.frontends.occi.usermixins import MixinStore
from tashi.runtime.tasks import Background

#: the zone of OCCI's volumes when none is given (``[Ec2] zones``' default)
DEFAULT_ZONE = "tashi-1a"
#: at most this many Basic logins are remembered (the oldest is forgotten first)
MAX_REMEMBERED = 1000


@dataclass(frozen=True, slots=True)
class OcciContext:
    service: ClusterService
    types: Mapping[str, InstanceType]
    default_type: str
    default_image: str  # "" : the one template of the store, if there is exactly one
    tokens: dict[str, str] = field(default_factory=dict)
    #: the zone of the volumes a storage is made of (EC2's first zone)
    zone: str = DEFAULT_ZONE
    #: the users' own mixins (``usermixins.py``)
    mixins: MixinStore = field(default_factory=MixinStore)
    #: the attaching of storages computes were created with (``storages.attach_pending``)
    work: Background = field(default_factory=lambda: Background("OCCI storagelinks"))

    @classmethod
    def build(
        cls,
        service: ClusterService,
        occi: OcciSettings,
        types: InstanceTypesSettings,
        *,
        state_dir: Path,
        zone: str = DEFAULT_ZONE,
    ) -> OcciContext:
        """From the settings, with the user mixins ``state_dir`` keeps (``[ClusterManager]
        stateDir``); ``InvalidInput`` naming the bad line."""
        table = instancetypes.table(types.entries)
        if occi.default_resource_tpl not in table:
            raise InvalidInput(
                f"[OCCI] defaultResourceTpl = {occi.default_resource_tpl} is not in [InstanceTypes]"
            )
        mixins = MixinStore.load(state_dir / mixinfile.FILE)
        return cls(
            service, table, occi.default_resource_tpl, occi.default_image, zone=zone, mixins=mixins
        )

    async def model(self, caller: Principal) -> Model:
        images = await self.service.images.list(caller)
        return Model.build(images, self.types, self.mixins.of(caller))

    async def caller(self, authorization: str, source: str) -> Principal:
        """The principal of an ``Authorization`` header (Basic or Bearer)."""
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() == "bearer":
            return await self.service.auth.authenticate(credentials.strip() or None)
        if scheme.lower() != "basic":
            raise NotAuthenticated(
                "no credentials: send HTTP Basic with a Tashi user's name and password, or"
                " 'Authorization: Bearer <token>' (tashi's login token)"
            )
        user, password = _basic(credentials)
        key = hashlib.sha256(f"{user}\0{password}".encode()).hexdigest()
        token = self.tokens.get(key)
        if token is not None:
            try:
                return await self.service.auth.authenticate(token)
            except NotAuthenticated:
                self.tokens.pop(key, None)  # expired: log in again
        login = await self.service.auth.login(user, password, source)
        if len(self.tokens) >= MAX_REMEMBERED:
            self.tokens.pop(next(iter(self.tokens)))
        self.tokens[key] = login.token
        return await self.service.auth.authenticate(login.token)


def _basic(credentials: str) -> tuple[str, str]:
    try:
        text = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise NotAuthenticated("the Basic credentials are not base64 of user:password") from None
    user, colon, password = text.partition(":")
    if not colon or not user:
        raise NotAuthenticated("the Basic credentials are not user:password")
    return user, password
