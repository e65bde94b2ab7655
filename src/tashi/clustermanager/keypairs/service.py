"""``KeyPairService``: a user's key pairs, made, imported, listed, found by name and deleted.

A key pair is its owner's alone: every method acts on the caller's own key pairs (an
administrator's included: a key pair is a credential, not a resource to manage), and another
user's is as unknown as one that does not exist. A made key pair's private key is in
``create``'s answer only; the store never sees it (``material.py`` makes it off the event loop).
Tags given at creation are saved in the same unit as the key pair; later tags go through
``clustermanager/tags.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from tashi.clustermanager.database import Database
from tashi.clustermanager.keypairs import material
from tashi.domain import keypairs, tags
from tashi.domain.clock import Clock
from tashi.domain.errors import AlreadyExists, NotFound
from tashi.domain.keypairs import KeyPair, KeyType
from tashi.domain.models import Principal
from tashi.storage.contract import Transaction


@dataclass(frozen=True, slots=True)
class NewKeyPair:
    """A key pair just made, with its private key: the one time it is told."""

    pair: KeyPair
    private_key: str
    tags: dict[str, str]


@dataclass(frozen=True, slots=True)
class Listed:
    pair: KeyPair
    tags: dict[str, str]


class KeyPairService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def create(
        self,
        caller: Principal,
        name: str,
        key_type: KeyType = KeyType.rsa,
        with_tags: Mapping[str, str] | None = None,
    ) -> NewKeyPair:
        """A new key pair named ``name`` (``AlreadyExists`` if the caller has one so named)."""
        keypairs.name(name)
        wanted = tags.checked(with_tags or {})
        await self._refuse_taken(caller, name)  # before the work of making a key
        made = await asyncio.to_thread(material.make, key_type, name)
        pair = self._record(caller, name, key_type, made.fingerprint, made.public_key)
        await self._db.write(lambda tx: self._add(tx, pair, wanted))
        return NewKeyPair(pair, made.private_key, wanted)

    async def import_key(
        self,
        caller: Principal,
        name: str,
        public_key: bytes,
        with_tags: Mapping[str, str] | None = None,
    ) -> Listed:
        """A key pair named ``name`` of the public key in ``public_key`` (``material.read``:
        ``KeyMaterialInvalid`` if it is not one)."""
        keypairs.name(name)
        wanted = tags.checked(with_tags or {})
        found = material.read(public_key, name)
        pair = self._record(caller, name, found.key_type, found.fingerprint, found.public_key)
        await self._db.write(lambda tx: self._add(tx, pair, wanted))
        return Listed(pair, wanted)

    async def list(self, caller: Principal) -> list[Listed]:
        """The caller's key pairs with their tags, by name."""

        def read(tx: Transaction) -> list[Listed]:
            pairs = tx.key_pairs.list(caller.user_id)
            tagged = tx.key_pair_tags.of([p.id for p in pairs])
            return [Listed(p, tagged.get(p.id, {})) for p in pairs]

        return await self._db.read(read)

    async def named(self, caller: Principal, name: str) -> KeyPair:
        """The caller's key pair named ``name``; ``NotFound``."""
        found = await self._db.read(lambda tx: tx.key_pairs.named(caller.user_id, name))
        if found is None:
            raise NotFound(f"The key pair '{name}' does not exist")
        return found

    async def delete(
        self, caller: Principal, *, name: str | None = None, key_id: str | None = None
    ) -> KeyPair | None:
        """Delete the caller's key pair named ``name`` or of id ``key_id``, with its tags; the
        key pair as it was, or ``None`` when the caller has none such (as AWS, not an error)."""

        def remove(tx: Transaction) -> KeyPair | None:
            if key_id is not None:
                found = tx.key_pairs.get(key_id)
            else:
                found = tx.key_pairs.named(caller.user_id, name or "")
            if found is None or found.user_id != caller.user_id:
                return None
            if name is not None and found.name != name:
                return None
            tx.key_pairs.remove(found.id)
            return found

        return await self._db.write(remove)

    async def _refuse_taken(self, caller: Principal, name: str) -> None:
        taken = await self._db.read(lambda tx: tx.key_pairs.named(caller.user_id, name))
        if taken is not None:
            raise AlreadyExists(f"The keypair '{name}' already exists.")

    def _record(
        self, caller: Principal, name: str, key_type: KeyType, fingerprint: str, public: str
    ) -> KeyPair:
        return KeyPair(
            id=keypairs.new_id(),
            user_id=caller.user_id,
            name=name,
            key_type=key_type,
            fingerprint=fingerprint,
            public_key=public,
            created_at=self._clock.now(),
        )

    @staticmethod
    def _add(tx: Transaction, pair: KeyPair, wanted: dict[str, str]) -> None:
        tx.key_pairs.add(pair)  # AlreadyExists: the name is taken (meanwhile)
        if wanted:
            tx.key_pair_tags.put(pair.id, wanted)
