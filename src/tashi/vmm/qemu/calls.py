"""The ``vmmSpecificCall`` operations of the QEMU driver (``base.VmmCall``).

VNC. Every VM's display is a VNC server on ``<state_dir>/vnc.sock`` with password
authentication and no password set, so nobody gets in until ``startVnc``, which sets a random
one-time password (VNC allows 8 characters) that expires for new connections after
``[Qemu] vncPasswordLifetime`` seconds. Where the viewer connects depends on ``[Qemu] vncHost``:

* empty (the default): nowhere new. The reply names the Unix socket, reachable only by root on
  the host, e.g. through ``ssh -L 5900:<socket> root@<host>``. No port is ever open.
* an address: ``display-update`` (QEMU >= 7.1) adds a TCP listener on that address with a port
  the kernel picks, which the reply names. ``stopVnc`` removes it again.

``stopVnc`` also replaces the password with a random expired one; a viewer already connected
stays until it leaves (QEMU 7.2 cannot drop VNC clients).

``changeCdrom`` takes an absolute path the node manager resolved inside the image store and
puts it read-only in the IDE CD drive ``cd0`` (an empty argument ejects). ``console`` reads the
end of the serial log qemu appends to; ``reset`` is the reset button; ``list`` the operations.
``nics`` tells of each NIC whether the guest's driver has taken the device (virtio's
``DRIVER_OK``, read with ``x-query-virtio-status``): how a NIC hot-plugged into a running VM is
seen to reach its guest.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from tashi.domain.errors import BackendFailure, InvalidInput
from tashi.vmm.base import VMM_OPS, VmmCall, VmState
from tashi.vmm.qemu.vm import QemuVm

_WILDCARDS = ("", "0.0.0.0", "::")


async def call(
    vm: QemuVm, request: VmmCall, *, vnc_host: str, vnc_lifetime: float, host_name: str
) -> str:
    op = VmmCall.parse(request.op).op
    if op == "list":
        return " ".join(VMM_OPS)
    if op == "console":
        return read_tail(vm.paths.console, request.console_kilobytes() * 1024)
    vm.expect(VmState.running, VmState.paused, VmState.shutting_down, what=op)
    if op == "reset":
        await vm.monitor.execute("system_reset")
        return f"instance {vm.iid} was reset"
    if op == "changeCdrom":
        return await _change_cdrom(vm, request.arg)
    if op == "nics":
        return await _nics(vm)
    if op == "startVnc":
        return await _start_vnc(vm, vnc_host, vnc_lifetime, host_name)
    return await _stop_vnc(vm, vnc_host)


def read_tail(path: Path, size: int) -> str:
    """The last ``size`` bytes of a log file, as text ("" when there is none yet)."""
    try:
        with path.open("rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - size))
            return log.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


async def _nics(vm: QemuVm) -> str:
    lines = []
    for index, nic in enumerate(vm.spec.nics):
        path = f"/machine/peripheral/nic{index}/virtio-backend"
        try:
            found = await vm.monitor.execute("x-query-virtio-status", {"path": path})
            statuses = " ".join(found.get("status", {}).get("statuses", []))
            guest = "ready" if "DRIVER_OK" in statuses else "waiting"
        except BackendFailure:
            guest = "unknown"  # not a virtio NIC
        lines.append(f"nic{index} mac={nic.mac.lower()} tap={nic.tap} guest={guest}")
    return "\n".join(lines)


async def _change_cdrom(vm: QemuVm, arg: str) -> str:
    if not arg:
        await vm.monitor.execute("eject", {"id": "cd0", "force": True})
        return f"CD of instance {vm.iid} ejected"
    image = Path(arg)
    if not image.is_absolute() or not image.is_file():
        raise InvalidInput(f"changeCdrom: {arg!r} is not an image file")
    medium = {"id": "cd0", "filename": str(image), "format": "raw", "read-only-mode": "read-only"}
    await vm.monitor.execute("blockdev-change-medium", medium)
    return f"CD of instance {vm.iid}: {image.name}"


async def _start_vnc(vm: QemuVm, vnc_host: str, lifetime: float, host_name: str) -> str:
    password = secrets.token_urlsafe(6)  # 8 characters, VNC's most
    await vm.monitor.execute("set_password", {"protocol": "vnc", "password": password})
    await vm.monitor.execute("expire_password", {"protocol": "vnc", "time": f"+{int(lifetime)}"})
    valid = f"password {password} (valid {int(lifetime)} s for a new connection)"
    if not vnc_host:
        socket = vm.paths.vnc
        return (
            f"VNC for instance {vm.iid}: Unix socket {socket} on {host_name}, {valid}."
            f" From elsewhere: ssh -L 5900:{socket} root@{host_name}, then view localhost:5900"
        )
    tcp = {"type": "inet", "host": vnc_host, "port": "0"}
    await _listen(vm, [tcp])
    port = await _tcp_port(vm)
    shown = host_name if vnc_host in _WILDCARDS else vnc_host
    return f"VNC for instance {vm.iid}: {shown}:{port}, {valid}"


async def _stop_vnc(vm: QemuVm, vnc_host: str) -> str:
    await vm.monitor.execute("set_password", {"protocol": "vnc", "password": secrets.token_hex(4)})
    await vm.monitor.execute("expire_password", {"protocol": "vnc", "time": "now"})
    if vnc_host:
        await _listen(vm, [])
    return f"VNC for instance {vm.iid} stopped"


async def _listen(vm: QemuVm, extra: list[dict[str, str]]) -> None:
    addresses = [{"type": "unix", "path": str(vm.paths.vnc)}, *extra]
    await vm.monitor.execute("display-update", {"type": "vnc", "addresses": addresses})


async def _tcp_port(vm: QemuVm) -> str:
    for server in await vm.monitor.execute("query-vnc-servers"):
        for listener in server.get("server", []):
            if listener.get("family") in ("ipv4", "ipv6"):
                return str(listener["service"])
    return "?"
