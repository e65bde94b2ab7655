"""Network administration, which the original Tashi lacked (networks were added by hand in a
debug console). A network's id is its VLAN/VNI number; ``defaultNetwork`` names the one a NIC
joins when the request names none."""

from __future__ import annotations

from tashi.clustermanager import refs
from tashi.clustermanager.accounts.auth import require_admin
from tashi.clustermanager.database import Database
from tashi.domain import validation
from tashi.domain.errors import InvalidInput
from tashi.domain.ids import NetworkId
from tashi.domain.models import Network, Principal
from tashi.storage.contract import Transaction

MAX_NETWORK_ID = 16_777_215  # 24-bit VXLAN network identifier


class NetworkService:
    def __init__(self, db: Database, default_network: NetworkId) -> None:
        self._db = db
        self.default_network = default_network

    async def list(
        self, caller: Principal, *, after: NetworkId | None = None, limit: int | None = None
    ) -> list[Network]:
        """``getNetworks``: the networks in id order; ``after``/``limit`` give one page."""
        return await self._db.read(lambda tx: tx.networks.list(after_id=after, limit=limit))

    async def add(self, caller: Principal, network_id: int, name: str) -> Network:
        require_admin(caller, "adding networks")
        if not 0 <= network_id <= MAX_NETWORK_ID:
            raise InvalidInput(f"a network id is a VLAN/VNI number from 0 to {MAX_NETWORK_ID}")
        validation.network_name(name)
        return await self._db.write(lambda tx: tx.networks.add(NetworkId(network_id), name))

    async def remove(self, caller: Principal, ref: str) -> Network:
        """Refused while any NIC is on the network."""
        require_admin(caller, "removing networks")

        def run(tx: Transaction) -> Network:
            net = refs.network(tx, ref)
            tx.networks.remove(net.id)
            return net

        return await self._db.write(run)
