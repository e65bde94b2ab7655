"""A minimal HTTP/1.1 keep-alive client on asyncio streams, for the load phases only.

Why not httpx: on this two-core machine the load generator competes with the server for CPU.
Measured here, ``httpx.AsyncClient`` spent 0.8 ms of client CPU per ``GET /health`` at
concurrency 1 and over 2 ms at concurrency 16 (its pool's bookkeeping grows with the number of
connections), so at 16 it could not send much more than ~450 requests/s on a whole core and the
"HTTP floor" it measured was its own. This client does only what the benchmark needs: one
connection per worker, a request head built once, ``Content-Length`` bodies (what uvicorn sends
for every Tashi answer; anything else is refused loudly). The server sees ordinary HTTP/1.1
requests. ``listing.py`` keeps httpx, because there the CLI's own client is what is measured.
"""

from __future__ import annotations

import asyncio
import contextlib

from bench.cluster import BenchError

_HEAD_END = b"\r\n\r\n"


class Connection:
    """One keep-alive connection; ``request`` returns (status, body)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def request(self, head: bytes, body: bytes | None) -> tuple[int, bytes]:
        """Send ``head`` (request line and headers, without the blank line) and ``body``."""
        length = len(body) if body is not None else 0
        self._writer.write(b"%s\r\nContent-Length: %d\r\n\r\n" % (head, length))
        if body:
            self._writer.write(body)
        head_bytes = await self._reader.readuntil(_HEAD_END)
        status, content_length = _parse_head(head_bytes)
        return status, await self._reader.readexactly(content_length)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):  # the server went first: closed either way
            await self._writer.wait_closed()


def request_head(method: str, path: str, host: str, headers: dict[str, str]) -> bytes:
    """The request line and headers of one request, built once per request shape."""
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return "\r\n".join(lines).encode("latin-1")


def _parse_head(head: bytes) -> tuple[int, int]:
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length: int | None = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding":
            raise BenchError(f"the load client reads Content-Length bodies only, got {line!r}")
    if length is None:
        raise BenchError(f"answer without Content-Length: {lines[0]!r}")
    return status, length
