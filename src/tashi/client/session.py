"""How the CLI connects: settings, credentials, and asking for a password on a terminal.

Credentials come from ``[AccessClusterManager]`` (``token``, or ``username`` and ``password``) in
the ``Client`` configuration files or the environment (the loader applies ``TASHI_USER``,
``TASHI_PASSWORD``, ``TASHI_TOKEN``, ``TASHI_CM_HOST``, ``TASHI_CM_PORT``). With a user name
but no password the CLI asks on a terminal; it never prompts when stdin is not a terminal, and
with no credentials at all it says where to put them. ``cli.py`` uses ``connect``.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from dataclasses import replace

from tashi.client.errors import UsageError
from tashi.client.sdk import TashiClient
from tashi.config import Settings, load_settings
from tashi.domain.errors import NotAuthenticated

NO_CREDENTIALS = (
    "no credentials for the cluster manager: put '[AccessClusterManager]' with 'username ='"
    " and 'password =' (or 'token =') in ~/.tashi/Client.cfg, or set TASHI_USER and"
    " TASHI_PASSWORD (or TASHI_TOKEN); an administrator can use the file tashi-cm writes at"
    " its first start: TASHI_CONFIG=<stateDir>/admin-credentials.cfg"
)


def ask_secret(prompt: str) -> str:
    """Read a secret from the terminal without echo; refuse when stdin is not a terminal."""
    if not sys.stdin.isatty():
        raise UsageError(f"cannot ask '{prompt.strip()}' because stdin is not a terminal")
    return getpass.getpass(prompt)


def connect(
    settings: Settings | None = None, ask: Callable[[str], str] = ask_secret
) -> TashiClient:
    """A client for the cluster manager the settings name, with the user's credentials."""
    settings = settings if settings is not None else load_settings("Client")
    access = settings.access_cluster_manager
    if not access.token and not access.username:
        raise NotAuthenticated(NO_CREDENTIALS)
    if not access.token and not access.password:
        access = replace(access, password=_ask_password(access.username, ask))
        settings = replace(settings, access_cluster_manager=access)
    return TashiClient.from_settings(settings)


def _ask_password(username: str, ask: Callable[[str], str]) -> str:
    try:
        return ask(f"Password for {username}: ")
    except UsageError:
        raise NotAuthenticated(
            f"no password for {username}: set [AccessClusterManager] password in"
            " ~/.tashi/Client.cfg or TASHI_PASSWORD, or run tashi on a terminal to be asked"
        ) from None
