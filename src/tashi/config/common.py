"""The sections any program may read: how it reaches the cluster manager, and its logging.

``[Client]`` (the ``tashi`` CLI), ``[AccessClusterManager]`` (the agents: scheduler, node
managers) and ``[Logging]``; gathered in ``settings.Settings``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tashi.config.options import option


@dataclass(frozen=True, slots=True)
class ClientSettings:
    SECTION: ClassVar[str] = "Client"
    DOC: ClassVar[str] = (
        "Where the tashi client finds the cluster manager (TASHI_CM_HOST/TASHI_CM_PORT override)."
    )

    cluster_manager_host: str = option("clusterManagerHost", "localhost", "Cluster manager host.")
    cluster_manager_port: int = option(
        "clusterManagerPort", 9882, "Cluster manager port.", minimum=1, maximum=65535
    )
    cluster_manager_timeout: float = option(
        "clusterManagerTimeout", 30.0, "Seconds the client waits for an answer.", minimum=0.1
    )


@dataclass(frozen=True, slots=True)
class AccessClusterManagerSettings:
    SECTION: ClassVar[str] = "AccessClusterManager"
    DOC: ClassVar[str] = (
        "Credentials used toward the cluster manager (client, agents, node managers). Keep the"
        " file that holds them private. TASHI_USER/TASHI_PASSWORD/TASHI_TOKEN override."
    )

    username: str = option("username", "", "User name to log in as.")
    password: str = option("password", "", "Password of that user.")
    token: str = option("token", "", "A bearer token to use instead of a user name and password.")


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    SECTION: ClassVar[str] = "Logging"
    DOC: ClassVar[str] = "Log output of the daemons (to standard error), and the logs they keep."

    level: str = option("level", "INFO", "DEBUG, INFO, WARNING or ERROR.")
    json: bool = option("json", False, "One JSON object per line instead of plain text.")
    max_log_size: int = option(
        "maxLogSize",
        4_194_304,
        "Bytes a log file the node manager keeps may hold (its VMs' console and qemu logs, its"
        " watchdog's): past it, checked every 10 s, the file's newest this many bytes move to"
        " <file>.1 and the file starts again.",
        minimum=65536,
    )
