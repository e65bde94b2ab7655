"""``getImages``: the disk images in the shared image store, for every authenticated caller."""

from __future__ import annotations

import asyncio

from tashi.domain.models import Image, Principal
from tashi.images.store import ImageStore


class ImageService:
    def __init__(self, store: ImageStore) -> None:
        self.store = store

    async def list(self, caller: Principal) -> list[Image]:
        return await asyncio.to_thread(self.store.list)
