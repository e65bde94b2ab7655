"""A hollow host's heartbeat on the wire: the real body, built again only when it changes,
sent over one light keep-alive HTTP/1.1 connection.

``HollowClient`` is the node manager's ``ClusterManagerClient`` (login, registration and VM
events go through it unchanged, over httpx) but for the heartbeat, the one call made hundreds
of times a second by a fleet of thousands of hosts. Through the real client a heartbeat cost
this process about 7 ms of CPU (15 VM reports converted to their pydantic wire models and
serialized, httpx, a ``TypeAdapter`` built for the reply): 500 heartbeats a second would have
taken 3.5 cores of a 2-core machine. Here:

- **The body is the real one**, from the real conversion (``convert.heartbeat_wire`` and the
  real schemas), but its VM reports are converted and serialized again only when they changed
  (a real node sends the same bytes for the same VMs); the fields around them (load, free
  memory, fenced VMs, witness epoch) are serialized at every beat and the cached reports set in
  (``HeartbeatBody``; a test checks the bytes equal the full serialization).
- **The connection is kept**, as httpx keeps one per client: one per host, opened again when
  the cluster manager closed it (its keep-alive timeout is shorter than a heartbeat period),
  plain asyncio streams instead of httpx's stack (``Connection``).
- **The reply** is validated against ``HeartbeatOut`` and converted only when its bytes differ
  from the last one's (they are the same beat after beat: the same lease, witnesses, peers).

Errors are those of the real client: an error answer becomes its ``TashiError`` (the same
``answer_error`` as the real transport), no connection ``Unavailable``, a lost or late answer
``Unanswered``; a refused token logs in again once, so an unknown host (``NotFound``) makes the
real ``Reporter`` register again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from urllib.parse import urlsplit

from pydantic import TypeAdapter, ValidationError

from tashi.domain.errors import (
    BackendFailure,
    Dependency,
    NotAuthenticated,
    Unanswered,
    Unavailable,
)
from tashi.domain.ids import HostId
from tashi.domain.nodes import Acknowledged, Heartbeat, VmReport
from tashi.nodeapi import convert, paths, timeouts
from tashi.nodeapi import schemas as s
from tashi.nodeapi.cmclient import ClusterManagerClient
from tashi.nodeapi.transport import REQUEST_ID, answer_error

PEER = "the cluster manager"
_HEAD_LIMIT = 64 * 1024
_VMS = TypeAdapter(list[s.VmReport])
_EMPTY_VMS = b'"vms":[]'


class HeartbeatBody:
    """The serialized heartbeat of one host; its VM reports serialized again only when they
    changed since the last beat."""

    def __init__(self) -> None:
        self._vms: tuple[VmReport, ...] | None = None
        self._vms_json = b"[]"

    def __call__(self, beat: Heartbeat) -> bytes:
        if beat.vms != self._vms:  # VmReport equality: same instance, VM id and state
            wire = [convert.vm_report_wire(r) for r in beat.vms]
            self._vms_json = _VMS.dump_json(wire)
            self._vms = beat.vms
        shell = convert.heartbeat_wire(dataclasses.replace(beat, vms=()))
        head = shell.model_dump_json().encode()
        # The only list that can be empty there, once: the other fields are numbers, a
        # list of numbers (``fenced``) and an address.
        return head.replace(_EMPTY_VMS, b'"vms":' + self._vms_json, 1)


class Connection:
    """One keep-alive HTTP/1.1 connection to ``host:port``, opened when a request finds none
    (or finds that the server closed it); a request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._authority = f"{host}:{port}".encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(
        self, path: str, headers: bytes, body: bytes, timeout: float
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        """POST ``body``: the answer's status, headers (lower-case names) and body."""
        reader, writer = await self._open()
        head = (
            b"POST "
            + path.encode()
            + b" HTTP/1.1\r\nHost: "
            + self._authority
            + b"\r\n"
            + headers
            + b"Content-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
        )
        writer.write(head + body)
        try:
            async with asyncio.timeout(timeout):  # no task of its own, as wait_for makes
                return await self._answer(reader)
        except TimeoutError as exc:
            self.close()  # a late answer would be read as the next request's
            message = f"{PEER} did not answer in time"
            raise Unanswered(message, failed=Dependency.cluster_manager) from exc
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            self.close()
            message = f"{PEER} did not answer: {exc!r}"
            raise Unanswered(message, failed=Dependency.cluster_manager) from exc

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        kept, keeper = self._reader, self._writer
        if kept is not None and keeper is not None:
            if not kept.at_eof() and not keeper.is_closing():
                return kept, keeper
            self.close()  # the server closed it while it was idle
        try:
            async with asyncio.timeout(timeouts.CONNECT):
                reader, writer = await asyncio.open_connection(
                    self._host, self._port, limit=_HEAD_LIMIT
                )
        except (OSError, TimeoutError) as exc:
            message = f"cannot reach {PEER} at {self._host}:{self._port}: {exc!r}"
            raise Unavailable(message, failed=Dependency.cluster_manager) from exc
        self._reader, self._writer = reader, writer
        return reader, writer

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes]:
        lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name:
                headers[name.strip().lower()] = value.strip()
        if b"content-length" not in headers:  # uvicorn sends it for every JSON answer
            self.close()
            raise BackendFailure(
                f"{PEER} answered with no Content-Length", failed=Dependency.cluster_manager
            )
        body = await reader.readexactly(int(headers[b"content-length"]))
        if headers.get(b"connection", b"").lower() == b"close":
            self.close()
        return status, headers, body

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def aclose(self) -> None:
        """Close it and wait till it is."""
        writer = self._writer
        self.close()
        if writer is not None:
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class HollowClient(ClusterManagerClient):
    """The real client of the cluster manager, its heartbeat sent as the module says."""

    def __init__(self, base_url: str, *, username: str, password: str) -> None:
        super().__init__(base_url, username=username, password=password)
        url = urlsplit(base_url)
        if url.scheme != "http" or url.hostname is None or url.port is None:
            raise ValueError(f"hollow hosts speak plain HTTP to host:port, not {base_url!r}")
        self._connection = Connection(url.hostname, url.port)
        self._body = HeartbeatBody()
        self._reply = b""
        self._acknowledged: Acknowledged | None = None

    async def heartbeat(self, host_id: HostId, report: Heartbeat) -> Acknowledged:
        path = paths.NODE_HEARTBEAT.format(host_id=host_id)
        body = self._body(report)
        if self._transport.token is None:
            await self.login()
        try:
            return await self._post(path, body)
        except NotAuthenticated:
            await self.login()
            return await self._post(path, body)

    async def _post(self, path: str, body: bytes) -> Acknowledged:
        headers = b"Authorization: Bearer " + str(self._transport.token).encode() + b"\r\n"
        status, answer, content = await self._connection.post(
            path, headers, body, timeouts.HEARTBEAT
        )
        if status >= 400:
            request_id = answer.get(REQUEST_ID.lower().encode(), b"").decode() or None
            raise answer_error(status, content, request_id, PEER, Dependency.cluster_manager)
        if content != self._reply or self._acknowledged is None:
            try:
                wire = s.HeartbeatOut.model_validate_json(content)
            except ValidationError as exc:
                message = f"{PEER} sent a malformed answer to {path}"
                raise BackendFailure(message, failed=Dependency.cluster_manager) from exc
            self._reply, self._acknowledged = content, convert.acknowledged(wire)
        return self._acknowledged

    async def close(self) -> None:
        await self._connection.aclose()
        await super().close()
