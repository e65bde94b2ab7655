"""``tashi-xmpp`` stops within 2 s of a SIGTERM whatever it is doing: reconnecting to an XMPP
server that is gone, or waiting for a createcompute's VM to run; and what it leaves in its
directory lets it start again. The daemon runs as a process of its own against a real
prosody and a real ``tashi-cm`` on loopback ports (no hosts: a VM it creates stays Pending,
so its createcompute is awaited for as long as the test likes)."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tashi.api.schemas import NetworkIn, UserIn
from tashi.client.sdk import TashiClient
from tashi.devcluster.harness import Style, admin_login
from tashi.devcluster.processes import Daemon, write_config
from tashi.devcluster.prosody import Prosody
from tashi.runtime.ports import free_port
from tests.xmpp import seed
from tests.xmpp.client import Ism

STOP_WITHIN = 2.0  # seconds from SIGTERM to the daemon's exit


@dataclass
class Setup:
    server: Prosody
    daemon: Daemon
    admin: TashiClient
    sections: dict[str, dict[str, object]]  # the daemon's configuration

    def configure(self, **xmpp: object) -> None:
        """Change ``[XMPP]`` options for the daemon's next start."""
        self.sections["XMPP"].update(xmpp)
        write_config(self.daemon.config, self.sections, private=True)

    def ism(self) -> Ism:
        return Ism(self.server.jid("ism"), "ism-password", str(self.server.ca_file))

    def files(self) -> set[str]:
        """What is in the daemon's directory (its log aside: it only grows)."""
        return {
            str(p.relative_to(self.daemon.root))
            for p in self.daemon.root.rglob("*")
            if p != self.daemon.log
        }

    def sigterm_to_exit(self) -> float:
        """Seconds from SIGTERM to the daemon's exit (it must exit 0)."""
        process = self.daemon.process
        assert process is not None and process.poll() is None, self.daemon.log_tail()
        started = time.monotonic()
        process.terminate()
        try:
            code = process.wait(timeout=30)
        finally:
            self.daemon.stop()  # SIGKILL if it did not stop; reaped either way
        took = time.monotonic() - started
        assert code == 0, f"exit {code}\n{self.daemon.log_tail()}"
        return took


@pytest.fixture
def setup(tmp_path: Path, tiny_image: Path) -> Iterator[Setup]:
    server = Prosody(tmp_path / "prosody")
    server.register("tashi", "tashi-password")
    server.register("ism", "ism-password")
    server.start()
    vfs = tmp_path / "vfs"
    (vfs / "images").mkdir(parents=True)
    shutil.copy(tiny_image, vfs / "images" / "tiny.qcow2")  # never booted: no host
    style = Style()
    cm_port = free_port()
    cm_config = style.write_config(
        tmp_path / "cm.cfg",
        {
            "ClusterManager": {"stateDir": tmp_path / "cm-state"},
            "ClusterManagerService": {"host": "127.0.0.1", "port": cm_port},
            "Vfs": {"prefix": vfs},
            "Ec2": {"port": free_port()},
            "OCCI": {"enabled": False},
        },
    )
    cm = style.daemon("tashi-cm", "tashi-cm", tmp_path, cm_config, cm_port)
    where = tmp_path / "xmpp"
    where.mkdir()
    try:
        cm.start()
        login = admin_login(tmp_path)
        admin = TashiClient(
            f"http://127.0.0.1:{cm_port}", username=login["username"], password=login["password"]
        )
        admin.register_user(UserIn(name="xmpp", password="xmpp-password-1", role="admin"))
        admin.add_network(NetworkIn(id=1, name="default"))
        sections: dict[str, dict[str, object]] = {
            "Client": {"clusterManagerHost": "127.0.0.1", "clusterManagerPort": cm_port},
            "AccessClusterManager": {"username": "xmpp", "password": "xmpp-password-1"},
            "XMPP": {
                "jid": server.jid("tashi"),
                "pwd": "tashi-password",
                "server": server.host,
                "port": server.port,
                "caFile": server.ca_file,
                "allowed": server.jid("ism"),
                "imageMap": "tashi=tiny.qcow2",
                "reconnectMax": 1.0,
            },
            "Logging": {"level": "INFO"},
        }
        agent = write_config(where / "agent.cfg", sections, private=True)
        daemon = Daemon(
            "tashi-xmpp",
            [sys.executable, "-m", "tashi.daemons.xmpp"],
            where,
            agent,
            0,
            ready_log="XMPP: logged in as",
        )
        with admin:
            yield Setup(server, daemon, admin, sections)
    finally:
        server.stop()
        cm.stop()


def test_sigterm_while_reconnecting_to_a_server_that_is_gone(setup: Setup) -> None:
    setup.daemon.start()
    setup.server.kill()
    log = setup.daemon.log
    deadline = time.monotonic() + 30
    while log.read_text().count("cannot log in") < 2:  # two attempts failed: it is retrying
        assert time.monotonic() < deadline, setup.daemon.log_tail()
        time.sleep(0.1)
    took = setup.sigterm_to_exit()
    print(f"tashi-xmpp stopped {took:.2f} s after SIGTERM while reconnecting")
    assert took < STOP_WITHIN, setup.daemon.log_tail()


def test_sigterm_while_a_createcompute_awaits_running_and_a_restart(setup: Setup) -> None:
    before = setup.files()
    setup.daemon.start()

    async def ask(message: str, status: str) -> dict[str, object]:
        ism = setup.ism()
        await ism.start(setup.server.host, setup.server.port)
        try:
            ism.say(setup.server.jid("tashi"), message)
            got = await ism.wait_for(
                status, lambda inbox: any(f'"status":"{status}"' in r.body for r in inbox), 30
            )
        finally:
            await ism.close()
        return next(r.document for r in got if f'"status":"{status}"' in r.body)

    accepted = asyncio.run(ask(seed.createcompute(1), "accepted"))
    assert setup.admin.get_instance(str(accepted["id"])).state == "Pending"  # no host: awaited
    took = setup.sigterm_to_exit()
    print(f"tashi-xmpp stopped {took:.2f} s after SIGTERM while awaiting a VM")
    assert took < STOP_WITHIN, setup.daemon.log_tail()
    log = setup.daemon.log.read_text()
    assert "Traceback" not in log and log.rstrip().endswith("stopped"), setup.daemon.log_tail()
    # nothing stale left behind: the directory holds what it held before the first start
    assert setup.files() == before | {"home"}, setup.files()
    assert not any((setup.daemon.root / "home").iterdir())

    # It starts again from there, still owes the VM its second answer (the VM's hints say to
    # whom), gives it when the VM has not run within waitTimeout, and serves.
    setup.configure(waitTimeout=3)
    setup.daemon.start()
    assert "awaiting again 1 createcompute" in setup.daemon.log_tail()
    failed = asyncio.run(ask("help", "failed"))
    assert (failed["id"], failed["hostname"]) == (accepted["id"], "tizzy1")
    assert "not running after 3 s (state Pending" in str(failed["reason"])
    deleted = asyncio.run(ask(f"deletecompute {accepted['id']}", "deleted"))
    assert deleted["id"] == accepted["id"]
    assert setup.sigterm_to_exit() < STOP_WITHIN
