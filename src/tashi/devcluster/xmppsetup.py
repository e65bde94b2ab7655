"""``tashi-cluster start --xmpp`` (or ``[Cluster] xmpp = True``): SLA@SOI's XMPP pieces.

Before the cluster manager starts, ``start_server`` runs prosody (``prosody.py``) in the cluster
manager's namespace, on its fabric address, port 5222, domain ``[Cluster] domain``, with three
accounts: ``tashi`` (the control daemon), ``publisher`` (the cluster manager's event
publisher) and ``ism`` (the SLA@SOI ISM: the one JID the daemon obeys, and the one the events
go to); ``cm_sections`` is the cluster manager's ``[XMPP]``. After the cluster manager is up,
``start_daemon`` registers the daemon's Tashi user (``xmpp``, an admin, for registerUser) and
starts ``tashi-xmpp`` in the same namespace. ``ism.cfg`` in ``<state>/xmpp`` holds the ISM's
account, for ``python -m tashi.xmpp.say`` (docs/xmpp.md) or any XMPP client.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

from tashi.api.schemas import UserIn
from tashi.client.sdk import TashiClient
from tashi.config.cluster import ClusterSettings
from tashi.devcluster import configs, control, processes
from tashi.devcluster.prosody import Prosody
from tashi.devcluster.state import Layout, State

PORT = 5222
PROSODY_KEY = "prosody"
DAEMON_KEY = "tashi-xmpp"
DAEMON_USER = "xmpp"  # the daemon's Tashi user
ACCOUNTS = ("tashi", "publisher", "ism")


def root(layout: Layout) -> Path:
    return layout.root / "xmpp"


def server_of(settings: ClusterSettings, state: State, layout: Layout) -> Prosody:
    fab = configs.plan(state)
    return Prosody(
        root(layout) / "prosody",
        domain=settings.domain,
        host=fab.cm_address,
        port=PORT,
        netns=fab.cm_ns,
        startup_timeout=settings.start_timeout,
        admins=(f"publisher@{settings.domain}",),  # it creates its pubsub node
    )


def start_server(settings: ClusterSettings, state: State, layout: Layout) -> None:
    """prosody with its accounts, recorded in ``state`` (so ``stop`` ends it)."""
    server = server_of(settings, state, layout)
    passwords = {user: secrets.token_urlsafe(16) for user in ACCOUNTS}
    for user, password in passwords.items():
        server.register(user, password)
    (root(layout) / "passwords").write_text(
        "".join(f"{user} {password}\n" for user, password in passwords.items())
    )
    (root(layout) / "passwords").chmod(0o600)
    daemon = server.make_daemon()
    state.daemons[PROSODY_KEY] = control.spawn(daemon)
    layout.save(state)
    daemon.wait_healthy()
    processes.write_config(
        root(layout) / "ism.cfg",
        {
            "XMPP": {
                **_where(server),
                "jid": server.jid("ism"),
                "pwd": passwords["ism"],
                "recipient": server.jid("tashi"),
            }
        },
        private=True,
    )


def _password(layout: Layout, user: str) -> str:
    for line in (root(layout) / "passwords").read_text().splitlines():
        name, _, password = line.partition(" ")
        if name == user:
            return password
    raise KeyError(user)


def _where(server: Prosody) -> dict[str, object]:
    return {"server": server.host, "port": server.port, "caFile": server.ca_file}


def cm_sections(settings: ClusterSettings, state: State, layout: Layout) -> configs.Sections:
    """The cluster manager's ``[XMPP]``: publish to the ISM, with a layout every 30 s (none
    when the cluster runs no XMPP)."""
    if not settings.xmpp:
        return {}
    server = server_of(settings, state, layout)
    return {
        "XMPP": {
            **_where(server),
            "enabled": True,
            "jid": server.jid("publisher"),
            "pwd": _password(layout, "publisher"),
            "recipient": server.jid("ism"),
            "pubsubService": server.pubsub,
            "layoutInterval": 30.0,
            "reconnectMax": 5.0,
        }
    }


def start_daemon(
    settings: ClusterSettings, state: State, layout: Layout, admin: TashiClient
) -> processes.Daemon:
    """``tashi-xmpp`` (as ``python -m tashi.daemons.xmpp``), started, recorded in ``state``;
    the caller waits for it (``wait_healthy``)."""
    server = server_of(settings, state, layout)
    password = secrets.token_urlsafe(16)
    admin.register_user(UserIn(name=DAEMON_USER, password=password, role="admin"))
    fab = configs.plan(state)
    sections: configs.Sections = {
        "Client": {"clusterManagerHost": fab.cm_address, "clusterManagerPort": state.cm_port},
        "AccessClusterManager": {"username": DAEMON_USER, "password": password},
        "XMPP": {
            **_where(server),
            "jid": server.jid("tashi"),
            "pwd": _password(layout, "tashi"),
            "allowed": server.jid("ism"),
            "imageMap": f"tashi={settings.image.name}",
            "reconnectMax": 5.0,
        },
        "Logging": {"level": "INFO"},
    }
    where = root(layout) / "daemon"
    where.mkdir(parents=True, exist_ok=True)
    config = processes.write_config(where / "agent.cfg", sections, private=True)
    daemon = processes.Daemon(
        DAEMON_KEY,
        [sys.executable, "-m", "tashi.daemons.xmpp"],
        where,
        config,
        0,
        netns=fab.cm_ns,
        new_session=True,
        startup_timeout=settings.start_timeout,
        ready_log="XMPP: logged in as",
    )
    state.daemons[DAEMON_KEY] = control.spawn(daemon)
    layout.save(state)
    return daemon


def how_to(layout: Layout) -> str:
    """What ``tashi-cluster start`` prints: how to send a createcompute."""
    ism = root(layout) / "ism.cfg"
    return (
        f"  xmpp:     prosody in the cluster manager's namespace; the ISM's account in {ism}\n"
        f"            {sys.executable} -m tashi.xmpp.say --config {ism} \\\n"
        '              \'createcompute [{"hostname":"vm1","memory_size":128,"cpu_cores":1,'
        '"imageIdentifier":"tashi"},[],[]]\'\n'
        "            (answers and the cluster manager's events are printed; docs/xmpp.md)"
    )
