"""The limits every HTTP server of Tashi applies to what its clients send (``tashi.web.limits``).

The cluster manager's API (``[ClusterManagerService]``, ``clustermanager.py``) and the node API
(``[NodeManagerService]``, ``nodemanager.py``) each have them in their own section: each call
below declares the same option, with its default, doc and bounds, in the section that calls it.
"""

from __future__ import annotations

from typing import Any

from tashi.config.options import option


def max_request_body() -> Any:
    return option(
        "maxRequestBody",
        1_048_576,
        "Largest request body, in bytes, the API accepts: a larger one is answered 413 before"
        " it is read (by its Content-Length, or as it streams in). No route takes uploads"
        " (images are copied on the shared store, never sent through the API).",
        minimum=1024,
    )


def request_head_timeout() -> Any:
    return option(
        "requestHeadTimeout",
        10.0,
        "Seconds a client has to send a request's line and headers, from its connection or the"
        " end of the previous answer on it; then the connection is closed (a client that"
        " dribbles its request holds nothing longer). A head over 64 KiB is refused (431).",
        minimum=0.1,
    )


def request_body_timeout() -> Any:
    return option(
        "requestBodyTimeout",
        30.0,
        "Seconds a client has to send a request's whole body once its head is in; past it the"
        " request is answered 408.",
        minimum=0.1,
    )


def max_connections(default: int = 1000) -> Any:
    return option(
        "maxConnections",
        default,
        "Most connections open at once, idle keep-alive ones included; past it a new"
        " connection is answered 503 and closed. Each costs a file descriptor: keep it within"
        " the process's open-file limit, above the clients that keep a connection open (every"
        " node manager keeps one to its cluster manager).",
        minimum=1,
    )


def max_requests() -> Any:
    return option(
        "maxRequests",
        1000,
        "Most requests in progress at once; past it a new request is answered 503 with"
        " Retry-After, so an overloaded server sheds work instead of queueing it. The cluster"
        " manager always admits node managers' reports (registrations, heartbeats, VM"
        " events), and does not count them: they keep leases and VMs alive, and there is at"
        " most one per host.",
        minimum=1,
    )
