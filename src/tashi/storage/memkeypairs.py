"""The in-memory store's key pairs and tags (``memory.py``; the contracts are
``contract.KeyPairRepository`` and ``contract.TagRepository``).

Tags are kept one entry per (resource, key), each value a string, so that a write
transaction's copy of the table (``memtables.DICTS``) is all it takes to roll one back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from tashi.domain.errors import AlreadyExists, NotFound
from tashi.domain.ids import UserId
from tashi.domain.keypairs import KeyPair
from tashi.storage.memtables import Tables, aware
from tashi.storage.shared import checked_key_pair, checked_tags


class MemoryKeyPairs:
    def __init__(self, t: Tables) -> None:
        self._t = t

    def add(self, pair: KeyPair) -> None:
        checked_key_pair(pair)
        aware(pair.created_at)
        if pair.user_id not in self._t.users:
            raise NotFound(f"user {pair.user_id} does not exist")
        if pair.id in self._t.key_pairs:
            raise AlreadyExists(f"the key pair {pair.id} exists already")
        if self.named(pair.user_id, pair.name) is not None:
            raise AlreadyExists(f"the key pair '{pair.name}' already exists")
        self._t.key_pairs[pair.id] = pair

    def get(self, key_id: str) -> KeyPair | None:
        return self._t.key_pairs.get(key_id)

    def named(self, user_id: UserId, name: str) -> KeyPair | None:
        found = (p for p in self._t.key_pairs.values() if (p.user_id, p.name) == (user_id, name))
        return next(found, None)

    def list(self, user_id: UserId | None = None) -> list[KeyPair]:
        pairs = [p for p in self._t.key_pairs.values() if user_id in (None, p.user_id)]
        return sorted(pairs, key=lambda p: (p.user_id, p.name))

    def remove(self, key_id: str) -> None:
        if self._t.key_pairs.pop(key_id, None) is None:
            raise NotFound(f"no key pair {key_id}")
        self._t.key_pair_tags = {k: v for k, v in self._t.key_pair_tags.items() if k[0] != key_id}


def drop_user(t: Tables, user_id: UserId) -> None:
    """A removed user's key pairs go with them, and their tags."""
    gone = {k for k, p in t.key_pairs.items() if p.user_id == user_id}
    t.key_pairs = {k: p for k, p in t.key_pairs.items() if k not in gone}
    t.key_pair_tags = {k: v for k, v in t.key_pair_tags.items() if k[0] not in gone}


class MemoryTags:
    """The tags of one kind of resource: ``table`` names the ``Tables`` member; ``exists``
    (when given) says whether a resource may be tagged, ``what`` names its kind."""

    def __init__(
        self,
        t: Tables,
        table: str,
        exists: Callable[[str], bool] | None = None,
        what: str = "key pair",
    ) -> None:
        self._t = t
        self._table = table
        self._exists = exists
        self._what = what

    @property
    def _rows(self) -> dict[tuple[str, str], str]:
        rows: dict[tuple[str, str], str] = getattr(self._t, self._table)
        return rows

    def of(self, refs: Sequence[str] | None = None) -> dict[str, dict[str, str]]:
        wanted = None if refs is None else set(refs)
        out: dict[str, dict[str, str]] = {}
        for (ref, key), value in sorted(self._rows.items()):
            if wanted is None or ref in wanted:
                out.setdefault(ref, {})[key] = value
        return out

    def put(self, ref: str, tags: Mapping[str, str]) -> None:
        checked_tags(tags)
        if self._exists is not None and not self._exists(ref):
            raise NotFound(f"no {self._what} {ref}")
        self._rows.update({(ref, k): v for k, v in tags.items()})

    def delete(self, ref: str, keys: Iterable[str] | None = None) -> int:
        rows = self._rows
        doomed = [k for k in rows if k[0] == ref] if keys is None else [(ref, k) for k in keys]
        gone = [k for k in doomed if rows.pop(k, None) is not None]
        return len(gone)
