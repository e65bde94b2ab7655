"""The hollow hosts' heartbeat: the real body, and the light client that sends it."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from bench.hollow import next_slot
from bench.hollowsink import Sink
from bench.hollowwire import HeartbeatBody, HollowClient

from tashi.domain.errors import NotFound, Unanswered
from tashi.domain.ids import HostId, InstanceId, NetworkId, UserId
from tashi.domain.models import DiskConfig, Instance, NicConfig
from tashi.domain.nodes import Heartbeat, VmReport
from tashi.domain.states import InstanceState
from tashi.nodeapi import convert

pytestmark = pytest.mark.anyio


def _vm(number: int) -> Instance:
    return Instance(
        id=InstanceId(number),
        name=f"vm{number}",
        user_id=UserId(2),
        state=InstanceState.Running,
        cores=1,
        memory=64,
        disks=(DiskConfig(uri="a.img"),),
        nics=(NicConfig(network=NetworkId(1), mac=f"52:54:00:00:00:{number:02x}"),),
        hints={"display": "vnc"},
    )


def _real(beat: Heartbeat) -> bytes:
    return convert.heartbeat_wire(beat).model_dump_json().encode()


def test_the_body_is_the_real_serialization_as_the_vms_and_the_load_change() -> None:
    body = HeartbeatBody()
    reports = tuple(VmReport(_vm(n), vm_id=n, state="running") for n in (1, 2, 3))
    beat = Heartbeat(vms=reports, load=0.5, free_memory=100, memory=900, cores=4)
    assert body(beat) == _real(beat)
    later = replace(beat, load=1.25, fenced=(InstanceId(7),), witness_epoch=3)
    assert body(later) == _real(later)  # the reports kept, the rest new
    stopped = replace(later, vms=(*reports[:2], VmReport(_vm(3), vm_id=3, state="exited")))
    assert body(stopped) == _real(stopped)
    assert body(Heartbeat(vms=())) == _real(Heartbeat(vms=()))


async def _serve(handler: object) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)  # type: ignore[arg-type]
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def test_heartbeats_keep_their_connection_and_open_another_once_it_is_closed() -> None:
    sink = Sink(lease=30.0)
    connections: list[asyncio.StreamWriter] = []

    async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        await sink.serve(reader, writer)

    server, url = await _serve(counted)
    client = HollowClient(url, username="node", password="secret")
    client._transport.token = "hollow"  # the fleet's shared login
    beat = Heartbeat(vms=(VmReport(_vm(1), vm_id=1, state="running"),), load=0.1)
    try:
        first = await client.heartbeat(HostId(4), beat)
        await client.heartbeat(HostId(4), beat)
        assert (first.host_id, first.lease_time, len(connections)) == (4, 30.0, 1)
        connections[0].close()  # as the server's keep-alive timeout does
        await connections[0].wait_closed()
        await asyncio.sleep(0.05)
        assert (await client.heartbeat(HostId(4), beat)).host_id == 4
        assert len(connections) == 2
    finally:
        await client.close()
        for writer in connections:
            writer.close()
        server.close()


async def _answer(writer: asyncio.StreamWriter, status: bytes, body: bytes) -> None:
    writer.write(
        b"HTTP/1.1 " + status + b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    writer.write(body)
    await writer.drain()


async def test_an_error_answer_is_its_category_and_no_answer_is_unanswered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        error = b'{"error":{"code":"not_found","message":"no host 9"}}'
        await _answer(writer, b"404 Not Found", error)
        writer.close()

    server, url = await _serve(refuse)
    client = HollowClient(url, username="node", password="secret")
    client._transport.token = "hollow"
    try:
        with pytest.raises(NotFound, match="no host 9"):
            await client.heartbeat(HostId(9), Heartbeat(vms=()))
    finally:
        await client.close()
        server.close()

    hung_up = asyncio.Event()

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # till the client gives up and closes
        writer.close()
        hung_up.set()

    monkeypatch.setattr("bench.hollowwire.timeouts.HEARTBEAT", 0.2)
    server, url = await _serve(mute)
    client = HollowClient(url, username="node", password="secret")
    client._transport.token = "hollow"
    try:
        with pytest.raises(Unanswered):
            await client.heartbeat(HostId(9), Heartbeat(vms=()))
        await asyncio.wait_for(hung_up.wait(), 5.0)  # it gave up its connection
    finally:
        await client.close()
        server.close()


def test_a_late_heartbeat_keeps_its_hosts_phase() -> None:
    assert next_slot(100.0, 10.0, 100.3) == 110.0  # on time
    assert next_slot(100.0, 10.0, 104.0) == 110.0  # late: the next slot all the same
    assert next_slot(100.0, 10.0, 123.0) == 130.0  # past slots are skipped, not bunched
