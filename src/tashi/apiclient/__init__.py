"""The one client of the cluster manager's public API, for every agent that talks to it.

``client.ApiClient`` (async, httpx) has one method per operation of ``tashi.api.paths``, typed
with ``tashi.api.schemas``; ``connection.Connection`` is its httpx seam (credentials, lazy login,
one re-login, timeouts), and ``errors.py`` the one place that maps the API's answers to the
``TashiError`` tree. Its users: the ``tashi`` CLI (through the synchronous facade
``tashi.client.sdk.TashiClient``), the scheduling agent, the DHCP/DNS hook, the benchmarks and
the front-ends to come. It imports only ``tashi.api`` and ``tashi.domain`` (the layers contract
says so): it talks to the cluster manager over HTTP, never to its insides.
"""

from __future__ import annotations

from tashi.apiclient.client import ApiClient, base_url

__all__ = ["ApiClient", "base_url"]
