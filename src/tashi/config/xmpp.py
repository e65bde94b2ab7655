"""The ``[XMPP]`` section (SLA@SOI's): the XMPP control daemon ``tashi-xmpp`` and the event
publisher of ``tashi-cm`` read it, each from its own program's files; gathered in
``settings.Settings``. See docs/xmpp.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tashi.config.options import option


@dataclass(frozen=True, slots=True)
class XmppSettings:
    SECTION: ClassVar[str] = "XMPP"
    DOC: ClassVar[str] = (
        "SLA@SOI's XMPP integration. tashi-xmpp (Agent.cfg) logs in as jid/pwd and takes"
        " createcompute, deletecompute, adaptcompute, registerUser and unregisterUser chat"
        " messages from the JIDs in allowed; tashi-cm (ClusterManager.cfg) publishes every"
        " instance and host event and a periodic VM layout to recipient when enabled is True."
        " The connection always uses TLS (STARTTLS). See docs/xmpp.md."
    )

    enabled: bool = option(
        "enabled",
        False,
        "tashi-cm: publish instance and host events and the VM layout to recipient (and the"
        " pubsub node, if set).",
    )
    jid: str = option("jid", "", "The XMPP account to log in as (user@domain).")
    pwd: str = option("pwd", "", "Its password.")
    recipient: str = option(
        "recipient", "", "tashi-cm: the JID the events are sent to, as chat messages."
    )
    server: str = option(
        "server",
        "",
        "Host name or address of the XMPP server (empty: found from the JID's domain).",
    )
    port: int = option("port", 5222, "Port of the XMPP server.", minimum=1, maximum=65535)
    ca_file: str = option(
        "caFile",
        "",
        "PEM file of the certificate authorities the server's certificate is checked against"
        " (empty: the system's).",
    )
    pubsub_service: str = option(
        "pubsubService",
        "",
        "tashi-cm: a pubsub service (XEP-0060, e.g. pubsub.example.org) the events are also"
        " published to, on pubsubNode (empty: none).",
    )
    pubsub_node: str = option("pubsubNode", "tashi/events", "tashi-cm: the pubsub node.")
    queue_size: int = option(
        "queueSize",
        1000,
        "Events (tashi-cm) or answers (tashi-xmpp) kept while the XMPP server is away; past"
        " it the oldest are dropped (and counted).",
        minimum=1,
    )
    layout_interval: float = option(
        "layoutInterval",
        60.0,
        "tashi-cm: seconds between two VM-layout snapshots sent to recipient (0: none).",
        minimum=0,
    )
    reconnect_max: float = option(
        "reconnectMax",
        30.0,
        "Longest wait (s) between two attempts to reach the XMPP server; the wait doubles from"
        " 0.5 s.",
        minimum=0.5,
    )
    allowed: str = option(
        "allowed",
        "",
        "tashi-xmpp: the JIDs (bare, comma or space separated) whose messages are acted upon;"
        " messages from any other JID are logged and ignored.",
    )
    image_map: str = option(
        "imageMap",
        "",
        "tashi-xmpp: imageIdentifier=disk pairs (space separated): the disk image a"
        " createcompute's imageIdentifier names; an identifier not listed is the disk's name.",
    )
    sla_shares: str = option(
        "slaShares",
        "gold=2048 silver=1024 bronze=512",
        "tashi-xmpp: the CPU share (priority on its host) of a VM by the term of its SLA"
        " category (scheme ...#sla); a VM without one gets 1024.",
    )
    owner: str = option(
        "owner",
        "",
        "tashi-xmpp: the Tashi user that owns the VMs it creates (empty: its own user; another"
        " user needs an admin's credentials).",
    )
    wait_timeout: float = option(
        "waitTimeout",
        600.0,
        "tashi-xmpp: seconds it waits for a created VM to run before it reports a failure.",
        minimum=1,
    )
