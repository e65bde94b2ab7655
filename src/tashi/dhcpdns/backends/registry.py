"""DHCP/DNS backends by name (``[DhcpDns] backend``); a name not in the table is refused at
start-up with the names there are. ISC dhcpd + BIND will add a line here."""

from __future__ import annotations

from collections.abc import Callable

from tashi.config.network import DhcpDnsSettings
from tashi.dhcpdns.backends.base import DhcpDnsBackend
from tashi.dhcpdns.backends.dnsmasq import DnsmasqBackend
from tashi.dhcpdns.backends.fake import FakeBackend
from tashi.domain.errors import InvalidInput

BACKENDS: dict[str, Callable[[DhcpDnsSettings], DhcpDnsBackend]] = {
    "dnsmasq": DnsmasqBackend,
    "fake": lambda settings: FakeBackend(),
}


def create_backend(settings: DhcpDnsSettings) -> DhcpDnsBackend:
    factory = BACKENDS.get(settings.backend)
    if factory is None:
        raise InvalidInput(
            f"[DhcpDns] backend = {settings.backend!r} is not a DHCP/DNS backend;"
            f" choose one of: {', '.join(sorted(BACKENDS))}"
        )
    return factory(settings)
