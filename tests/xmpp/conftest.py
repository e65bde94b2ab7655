"""A live virtual cluster started with ``tashi-cluster start --xmpp`` ([Cluster] xmpp = True):
two QEMU hosts, the cluster manager with its XMPP event publisher, the scheduler, ``tashi-xmpp``
and a real prosody in the cluster manager's namespace; and ``ism``, a slixmpp client logged in
as the SLA@SOI ISM (the JID the daemon obeys and the events go to), for one scenario."""

from __future__ import annotations

import configparser
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tashi.config.cluster import ClusterSettings
from tashi.devcluster import xmppsetup
from tashi.devcluster.harness import Running, ha_options, running_cluster
from tashi.devcluster.prosody import Prosody
from tests.xmpp.client import Ism

# TASHI_TEST_XMPP_FABRIC: another fabric, for a second run of these tests beside a first
FABRIC = os.environ.get("TASHI_TEST_XMPP_FABRIC", "198.18.224.0/20")


@dataclass
class XmppCluster:
    running: Running
    server: Prosody  # the cluster's prosody (its files; the process is the cluster's)
    ism_jid: str
    ism_password: str
    daemon_jid: str
    publisher_jid: str

    @property
    def root(self) -> Path:
        return xmppsetup.root(self.running.layout)

    def client(self, jid: str | None = None, password: str | None = None) -> Ism:
        return Ism(jid or self.ism_jid, password or self.ism_password, str(self.server.ca_file))

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.daemon_log().splitlines()[-lines:])

    async def ism(self) -> Ism:
        client = self.client()
        await client.start(self.server.host, self.server.port)
        return client

    def daemon_log(self) -> str:
        return (self.root / "daemon" / "tashi-xmpp.log").read_text(errors="replace")


@pytest.fixture(scope="package")
def xmpp_cluster(
    tmp_path_factory: pytest.TempPathFactory, tiny_image: Path
) -> Iterator[XmppCluster]:
    if os.geteuid() != 0:
        pytest.fail("the XMPP tests run a virtual cluster: run them as root")
    # 2 x 3072 MB: the seed's ten createcompute of 512 MB each fit, with room for one more
    options = ha_options(FABRIC, tiny_image, hostMemory=3072, xmpp=True)
    with running_cluster(tmp_path_factory.mktemp("xmpp"), 2, options) as running:
        state = running.state
        # the cluster's prosody: its files (written again, the same), not its process
        server = xmppsetup.server_of(ClusterSettings(), state, running.layout)
        ism = configparser.ConfigParser(interpolation=None)
        ism.read(xmppsetup.root(running.layout) / "ism.cfg")
        assert "prosody" in state.daemons and "tashi-xmpp" in state.daemons
        cluster = XmppCluster(
            running,
            server,
            ism_jid=ism["XMPP"]["jid"],
            ism_password=ism["XMPP"]["pwd"],
            daemon_jid=server.jid("tashi"),
            publisher_jid=server.jid("publisher"),
        )
        yield cluster
