"""The metadata listener: one TCP socket on 169.254.169.254:80 of ``tashi-md``, HTTP/1.1.

Every guest's connection arrives here, steered by its tap's chain (``rules.py``) and marked with
its NIC's slot; ``identify`` reads that mark off the accepted socket (``SO_MARK``: the namespace's
``tcp_fwmark_accept`` copies the SYN's), and the guest is looked up by it at each request, so a
VM that is gone mid-connection gets 404, never another's data. A connection with no NIC's mark
(a process of the host itself: the address is local to it) is closed unanswered. The answer
is ``answers.py``'s.

HTTP is the small part EC2's clients use: a request line, headers, a body only by
``Content-Length`` (a token request has none), keep-alive (HTTP/1.1 by default, 1.0 when asked).
Limits keep a guest from holding the node manager's memory or sockets: 8 KiB of request head,
4 KiB of body, 10 s idle, 16 connections per guest and 1024 in all; what passes them is closed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
from collections.abc import Callable
from email.utils import formatdate

from tashi.nodemanager.metadata import rules
from tashi.nodemanager.metadata.answers import Answers, Reply, Request, error
from tashi.nodemanager.metadata.guests import Guest

log = logging.getLogger(__name__)

HEAD_LIMIT = 8192
BODY_LIMIT = 4096
IDLE = 10.0
PER_GUEST = 16
IN_ALL = 1024


def listening_socket(address: str = rules.ADDRESS, port: int = rules.PORT) -> socket.socket:
    """The listener, bound to the metadata link only: nothing else in this namespace (another
    interface, a local process) can connect to it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, rules.LINK.encode())
        sock.bind((address, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def mark_of(sock: socket.socket) -> int:
    """The slot of the NIC a connection came through (0: none of ours)."""
    slot = rules.slot_of(sock.getsockopt(socket.SOL_SOCKET, socket.SO_MARK))
    return slot or 0


class MetadataServer:
    def __init__(
        self,
        answers: Answers,
        guest_of: Callable[[int], Guest | None],
        *,
        identify: Callable[[socket.socket], int] = mark_of,
    ) -> None:
        self._answers = answers
        self._guest_of = guest_of
        self._identify = identify
        self._server: asyncio.Server | None = None
        self._open: collections.Counter[int] = collections.Counter()

    async def start(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_server(self._connection, sock=sock, limit=HEAD_LIMIT)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._server.wait_closed()
            self._server = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        slot = self._identify(sock)
        # No NIC's mark: not a guest's connection (a process of the host reaches the address
        # too, it is local). Closed unanswered, as one over the limits.
        if not slot or self._open[slot] >= PER_GUEST or self._open.total() >= IN_ALL:
            writer.close()
            return
        self._open[slot] += 1
        try:
            await self._requests(slot, sock, reader, writer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass  # a client that stopped, sent too much, or idled: nothing to answer
        except (ConnectionError, OSError) as exc:
            log.debug("metadata connection of slot %s ended: %s", slot, exc)
        except Exception:  # supervision boundary: one connection, never the listener
            log.exception("metadata request of slot %s failed", slot)
        finally:
            self._open[slot] -= 1
            if self._open[slot] <= 0:
                del self._open[slot]
            writer.close()

    async def _requests(
        self,
        slot: int,
        sock: socket.socket,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        while True:
            async with asyncio.timeout(IDLE):
                head = await reader.readuntil(b"\r\n\r\n")
            parsed = _parse(head)
            if parsed is None:
                await _send(writer, error(400), head=False, keep=False)
                return
            request, version = parsed
            length = request.headers.get("content-length", "0").strip()
            if not length.isdigit() or int(length) > BODY_LIMIT or _chunked(request):
                await _send(writer, error(400), head=False, keep=False)
                return
            async with asyncio.timeout(IDLE):
                await reader.readexactly(int(length))
            reply = self._answers.answer(request, self._guest_of(slot))
            if reply.hop_limit:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
            keep = _keep_alive(request, version)
            await _send(writer, reply, head=request.method.upper() == "HEAD", keep=keep)
            if not keep:
                return


def _parse(head: bytes) -> tuple[Request, str] | None:
    text = head.decode("latin-1")  # HTTP's own encoding: any byte is a character
    line, *header_lines = text.rstrip("\r\n").split("\r\n")
    words = line.split(" ")
    if len(words) != 3 or words[2] not in ("HTTP/1.0", "HTTP/1.1") or not words[0].isalpha():
        return None
    headers: dict[str, str] = {}
    for header in header_lines:
        name, colon, value = header.partition(":")
        if not colon or not name or name != name.strip():
            return None
        headers[name.lower()] = value.strip()
    return Request(words[0], words[1], headers), words[2]


def _chunked(request: Request) -> bool:
    return "chunked" in request.headers.get("transfer-encoding", "").lower()


def _keep_alive(request: Request, version: str) -> bool:
    connection = request.headers.get("connection", "").lower()
    if version == "HTTP/1.0":
        return connection == "keep-alive"
    return connection != "close"


async def _send(writer: asyncio.StreamWriter, reply: Reply, *, head: bool, keep: bool) -> None:
    lines = [
        f"HTTP/1.1 {reply.status} {reply.reason}",
        f"Content-Type: {reply.content_type}",
        f"Content-Length: {len(reply.body)}",
        f"Date: {formatdate(usegmt=True)}",
        "Server: EC2ws",
        f"Connection: {'keep-alive' if keep else 'close'}",
        *(f"{name}: {value}" for name, value in reply.headers),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    if not head:
        writer.write(reply.body)
    await writer.drain()
