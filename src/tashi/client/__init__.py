"""The client side of Tashi: a typed SDK of the cluster manager's API and the ``tashi`` CLI.

``sdk.TashiClient`` (a synchronous facade over ``tashi.apiclient.ApiClient``, the one client of
the API) speaks the wire contract of ``tashi.api``; ``cli.py`` is the ``tashi``/``tashi-admin``
command with the original verbs, declared by noun in ``verbs/`` and printed with ``tables.py``.
The client imports only ``tashi.apiclient``, ``tashi.api``, ``tashi.domain`` and
``tashi.config``: it talks to the cluster manager over HTTP.
"""

from __future__ import annotations

from tashi.client.sdk import TashiClient

__all__ = ["TashiClient"]
