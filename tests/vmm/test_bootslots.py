"""Boot slots (``tashi.vmm.qemu.bootslots``): flock'ed files shared by processes, first come
first served within one, and the end of a boot read from a process's CPU time."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tashi.devcluster.processes import kill_child
from tashi.domain.errors import InvalidInput
from tashi.vmm.qemu import bootslots
from tashi.vmm.qemu.bootslots import BootSlots

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_the_count_is_auto_off_or_a_number() -> None:
    assert bootslots.parse_count("auto", cpus=2) == 4
    assert bootslots.parse_count(" Auto ", cpus=8) == 16
    assert bootslots.parse_count("off") == 0
    assert bootslots.parse_count("0") == 0
    assert bootslots.parse_count("3") == 3
    for bad in ("-1", "two", "", "1.5"):
        with pytest.raises(InvalidInput, match="bootSlots"):
            bootslots.parse_count(bad)


def test_no_more_slots_are_held_than_there_are(tmp_path: Path) -> None:
    one, other = BootSlots(tmp_path, 2), BootSlots(tmp_path, 2)  # two node managers
    first, second = one.try_take(), other.try_take()
    assert first is not None and second is not None
    assert {first.index, second.index} == {0, 1}
    assert one.try_take() is None and other.try_take() is None
    second.release()
    third = one.try_take()
    assert third is not None and third.index == second.index
    second.release()  # twice is harmless, and frees nothing of someone else's
    assert other.try_take() is None
    first.release()
    third.release()


def test_a_process_that_dies_frees_its_slots(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from tashi.vmm.qemu.bootslots import BootSlots\n"
            "slots = BootSlots(Path(sys.argv[1]), 1)\n"
            "held = slots.try_take()\n"
            "print('held' if held else 'none', flush=True)\n"
            "sys.stdin.read()\n",
            str(tmp_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        assert BootSlots(tmp_path, 1).try_take() is None
    finally:
        kill_child(holder)
    slot = BootSlots(tmp_path, 1).try_take()
    assert slot is not None
    slot.release()


async def test_waiters_are_served_in_the_order_they_came(tmp_path: Path) -> None:
    slots = BootSlots(tmp_path, 1, poll=0.005)
    held = slots.try_take()
    assert held is not None
    served: list[str] = []

    async def wait(name: str) -> None:
        slot = await slots.take()
        served.append(name)
        await asyncio.sleep(0)  # let the others try while this one holds it
        slot.release()

    tasks = []
    for name in ("a", "b", "c"):
        tasks.append(asyncio.create_task(wait(name)))
        await asyncio.sleep(0.02)  # each is waiting before the next comes
    assert slots.waiting == 3
    assert slots.try_take() is None  # nobody overtakes the waiters, even with a free slot
    held.release()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert served == ["a", "b", "c"]
    assert slots.waiting == 0


async def test_a_cancelled_waiter_leaves_the_queue(tmp_path: Path) -> None:
    slots = BootSlots(tmp_path, 1, poll=0.005)
    held = slots.try_take()
    assert held is not None
    waiter = asyncio.create_task(slots.take())
    await asyncio.sleep(0.02)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert slots.waiting == 0
    held.release()
    again = slots.try_take()
    assert again is not None
    again.release()


def test_there_is_at_least_one_slot(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        BootSlots(tmp_path, 0)


class Burst:
    """CPU time of a process that is busy for ``busy`` seconds of loop time, then idle."""

    def __init__(self, busy: float, *, ends_after: float | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.start, self.busy, self.ends_after = self.loop.time(), busy, ends_after

    def __call__(self) -> float | None:
        elapsed = self.loop.time() - self.start
        if self.ends_after is not None and elapsed > self.ends_after:
            return None
        return min(elapsed, self.busy)


async def test_a_boot_ends_when_the_cpu_goes_quiet() -> None:
    why = await bootslots.until_booted(Burst(0.2), hold=30.0, window=0.05)
    assert why.startswith("booted after")
    seconds = float(why.split()[2])
    assert 0.2 <= seconds < 5.0


async def test_a_guest_busy_for_ever_gives_its_slot_up_after_the_hold() -> None:
    why = await bootslots.until_booted(Burst(1e9), hold=0.3, window=0.05)
    assert why == "still busy after 0.3 s (bootHold)"


async def test_a_qemu_that_ends_gives_its_slot_up() -> None:
    why = await bootslots.until_booted(Burst(1e9, ends_after=0.2), hold=30.0, window=0.05)
    assert why == "qemu ended"


def test_cpu_demand_counts_waiting_for_a_processor_as_well_as_running() -> None:
    """Two busy processes pinned to one processor: each runs about half the time and waits on
    the run queue the other half, so the demand of each is about twice its use."""
    script = (
        "import os, sys, time\n"
        "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "partner = os.fork()\n"
        "end = time.monotonic() + 1.0\n"
        "while time.monotonic() < end: pass\n"
        "if partner == 0: os._exit(0)\n"
        "os.waitpid(partner, 0)\n"
        "sys.stdout.write('done\\n'); sys.stdout.flush(); sys.stdin.read()\n"
    )
    spinner = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert spinner.stdout is not None
        assert spinner.stdout.readline().strip() == "done"
        demand = bootslots.cpu_demand_of(spinner.pid)
        used = cpu_seconds(spinner.pid)
        assert demand is not None
        assert demand > used * 1.3, (demand, used)
    finally:
        kill_child(spinner)
    assert bootslots.cpu_demand_of(spinner.pid) is None


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
