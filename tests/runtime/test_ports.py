"""``free_port``: ports for listeners that bind them a moment later."""

from __future__ import annotations

import socket

import pytest

from tashi.runtime import ports
from tashi.runtime.ports import ephemeral_floor, free_port


def test_ports_are_below_the_kernels_ephemeral_range() -> None:
    # An outgoing connection can take a port of the ephemeral range between the check and the
    # daemon's bind; ports under it are taken only by someone binding them by number.
    chosen = [free_port() for _ in range(50)]
    assert all(ports.LOWEST_PORT <= port < ephemeral_floor() for port in chosen)


def test_a_port_is_never_handed_out_twice_in_one_process() -> None:
    chosen = [free_port() for _ in range(200)]
    assert len(set(chosen)) == len(chosen)


def test_a_port_someone_listens_on_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        held = holder.getsockname()[1]
        holder.listen()
        # Make the held port the only candidate but one: the search starts on it.
        monkeypatch.setattr(ports, "LOWEST_PORT", held)
        monkeypatch.setattr(ports, "ephemeral_floor", lambda: held + 2)
        monkeypatch.setattr(ports, "_HANDED_OUT", {})
        assert free_port() == held + 1
        with pytest.raises(ports.Unavailable, match="no free TCP port"):
            free_port()


def test_a_long_lived_process_never_runs_out(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the latest ports are remembered: a node manager takes one per incoming migration
    # for as long as it runs, more than the range holds.
    monkeypatch.setattr(ports, "_HANDED_OUT", {})
    monkeypatch.setattr(ports, "REMEMBERED", 3)
    monkeypatch.setattr(ports, "LOWEST_PORT", ephemeral_floor() - 4)
    chosen = [free_port() for _ in range(20)]
    assert len(ports._HANDED_OUT) == 3
    assert all(ports.LOWEST_PORT <= port < ephemeral_floor() for port in chosen)
