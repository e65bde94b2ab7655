"""A stand-in for the cluster manager's node endpoints, to weigh the load generator alone.

``python -m bench.hollowsink PORT LEASE`` answers on 127.0.0.1:PORT, over keep-alive
HTTP/1.1, exactly the four calls a hollow host makes of the cluster manager: a login
(a token), a registration (``RegisterOut``), a heartbeat (``HeartbeatOut``) and VM events
(``EventsOut``), each reply built by the real conversion (``tashi.nodeapi.convert``) and
granting an HA lease of LEASE seconds. It reads no body beyond its length and keeps no state
but a host counter: at a few tens of microseconds a request it stays out of the way of what
``hollowcost.py`` measures, the CPU the hollow hosts spend to offer their heartbeats, which the
real cluster manager, slower than the offered load at the sizes that matter, cannot show.

Not a cluster manager and never one in a test of Tashi: nothing here decides anything.
"""

from __future__ import annotations

import asyncio
import itertools
import sys

from tashi.api import paths as public
from tashi.domain.ids import HostId
from tashi.domain.nodes import Acknowledged
from tashi.nodeapi import convert
from tashi.nodeapi.schemas import EventsOut

_HEAD_LIMIT = 64 * 1024


class Sink:
    """The canned answers, and a connection handler that serves them."""

    def __init__(self, lease: float) -> None:
        self._lease = lease
        self._ids = itertools.count(1)
        self._beats: dict[bytes, bytes] = {}
        self.requests = 0

    def _answer(self, path: bytes) -> bytes:
        if path == public.TOKEN.encode():
            return b'{"token":"hollow"}'
        if path.endswith(b"/heartbeat"):
            host = path.split(b"/")[-2]
            if host not in self._beats:
                ack = Acknowledged(HostId(int(host)), "Normal", lease_time=self._lease)
                wire = convert.heartbeat_reply_wire(ack)
                self._beats[host] = wire.model_dump_json().encode()
            return self._beats[host]
        if path.endswith(b"/events"):
            return EventsOut(accepted=1).model_dump_json().encode()
        ack = Acknowledged(HostId(next(self._ids)), "Normal", lease_time=self._lease)
        return convert.registered_wire(ack).model_dump_json().encode()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                body = self._answer(head.split(b" ", 2)[1])
                self.requests += 1
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away
        finally:
            writer.close()


async def _main(port: int, lease: float) -> None:
    sink = Sink(lease)
    server = await asyncio.start_server(
        sink.serve, "127.0.0.1", port, limit=_HEAD_LIMIT, backlog=4096
    )
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main() -> int:
    asyncio.run(_main(int(sys.argv[1]), float(sys.argv[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
