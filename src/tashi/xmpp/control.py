"""What ``tashi-xmpp`` does with a chat message: check the sender, parse, act, answer.

``Controller.handle`` is called for every chat message the daemon's ``Session`` receives. A
sender whose bare JID is not in ``[XMPP] allowed`` is logged and ignored (no answer: nothing
tells a stranger the daemon exists). Otherwise the message is parsed (``commands.py``) and
carried out through the one API client, and answered at once with one JSON object: the
acknowledgement (``"status": "accepted"`` for a createcompute, the result for the others) or
the error (``"status": "error"``, its category and message).

A createcompute is answered a second time, asynchronously, when its VM runs
(``"status": "running"``, with its host) or has failed (``"status": "failed"`` with the
reason: it ended, was destroyed, or did not run within ``waitTimeout``). ``Controller.watch``,
a supervised loop, follows the cluster manager's change feed (the long-poll the scheduler uses)
and reads the instances still awaited whenever something changed. A VM the scheduler holds
(no host can take it now) is reported once as ``"held"`` with the reason and still awaited.

The daemon keeps no file: who awaits a VM is in the VM's own hints (``xmppReplyTo``, the
sender's full JID), so a restarted daemon (``recover``) awaits again the VMs its predecessor
created that have not run yet, for a whole ``waitTimeout``, and answers them as it would have.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tashi.api.schemas import DiskIn, InstanceIn, InstanceOut, UserIn
from tashi.apiclient.client import ApiClient
from tashi.domain.errors import InvalidInput, InvalidState, NotFound, TashiError
from tashi.xmpp import commands
from tashi.xmpp.commands import (
    AdaptCompute,
    Command,
    CreateCompute,
    DeleteCompute,
    Help,
    RegisterUser,
    UnregisterUser,
)

log = logging.getLogger(__name__)

DEFAULT_SHARE = 1024
REPLY_TO = "xmppReplyTo"  # the hint naming who awaits a VM's second answer
#: the states of a VM on its way to its first run (a restarted daemon awaits those again)
ON_THE_WAY = frozenset({"Pending", "PreparingDisk", "Activating", "Held"})
FEED_WAIT = 20.0  # seconds one long-poll of the change feed may wait
REQUEST_SHOWN = 100  # characters of a message an error answer repeats (to match it up)

Reply = Callable[[str, str], object]


@dataclass(frozen=True, slots=True)
class ControlOptions:
    """``[XMPP]``'s options of the daemon, parsed (``from_settings`` in the daemon)."""

    allowed: frozenset[str]
    images: dict[str, str] = field(default_factory=dict)
    sla_shares: dict[str, int] = field(default_factory=dict)
    owner_id: int | None = None
    wait_timeout: float = 600.0


def jid_list(text: str) -> frozenset[str]:
    """Bare JIDs, lower-cased, from a comma or space separated list."""
    return frozenset(word.lower() for word in text.replace(",", " ").split())


def pairs(option: str, text: str) -> dict[str, str]:
    """``a=b c=d`` as a dict (``InvalidInput`` naming ``option`` otherwise)."""
    out: dict[str, str] = {}
    for word in text.replace(",", " ").split():
        key, eq, value = word.partition("=")
        if not (key and eq and value):
            raise InvalidInput(f"[XMPP] {option}: {word!r} is not name=value")
        out[key] = value
    return out


@dataclass(slots=True)
class _Awaited:
    sender: str
    hostname: str
    resource_id: str | None
    deadline: float
    held_told: bool = False


class Controller:
    def __init__(
        self,
        api: ApiClient,
        options: ControlOptions,
        reply: Reply,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._options = options
        self._reply = reply
        self._clock = clock
        self._awaited: dict[int, _Awaited] = {}
        self._new_work = asyncio.Event()
        self._version = 0
        self.ignored = 0  # messages from JIDs not allowed
        # Commands are carried out one after the other, in the order they came: answers keep
        # that order, and ten createcompute at once do not make ten logins at once.
        self._one_at_a_time = asyncio.Lock()

    # --- messages -------------------------------------------------------------------------

    async def handle(self, sender: str, body: str) -> None:
        """Act on one chat message from ``sender`` (a full JID) and answer it."""
        bare = sender.partition("/")[0].lower()
        if bare not in self._options.allowed:
            self.ignored += 1
            log.warning("XMPP: ignored a message from %s (not in [XMPP] allowed)", bare)
            return
        try:
            command = commands.parse(body)
        except InvalidInput as exc:
            self._answer(
                sender,
                {
                    "status": "error",
                    "error": exc.code,
                    "message": exc.message,
                    "request": body[:REQUEST_SHOWN],
                },
            )
            return
        log.info("XMPP: %s asks %s", bare, type(command).__name__)
        try:
            async with self._one_at_a_time:
                answer = await self._do(sender, command)
        except TashiError as exc:
            answer = {
                "command": _name(command),
                "status": "error",
                "error": exc.code,
                "message": exc.message,
                "request": body[:REQUEST_SHOWN],
            }
        self._answer(sender, answer)

    def _answer(self, to: str, document: dict[str, object]) -> None:
        self._reply(to, json.dumps(document, separators=(",", ":")))

    async def _do(self, sender: str, command: Command) -> dict[str, object]:
        match command:
            case CreateCompute():
                return await self._create(sender, command)
            case DeleteCompute(ref=ref):
                gone = await self._api.destroy_vm(ref)
                self._awaited.pop(gone.id if gone is not None else -1, None)
                return {"command": "deletecompute", "status": "deleted", "id": _id(ref, gone)}
            case AdaptCompute():
                return await self._adapt(command)
            case RegisterUser(name=name, password=password, priority=priority):
                user = await self._api.register_user(
                    UserIn(name=name, password=password, priority=priority)
                )
                return {"command": "registerUser", "status": "done", "userId": user.id}
            case UnregisterUser(ref=ref):
                user = await self._api.unregister_user(ref)
                return {"command": "unregisterUser", "status": "done", "userId": user.id}
            case Help():
                return {"command": "help", "status": "done", "message": commands.USAGE}

    async def _create(self, sender: str, command: CreateCompute) -> dict[str, object]:
        request = self.request_of(command)
        request.hints[REPLY_TO] = sender
        vm = await self._api.create_vm(request)
        self._awaited[vm.id] = _Awaited(
            sender,
            command.hostname,
            command.resource_id,
            self._clock() + self._options.wait_timeout,
        )
        self._new_work.set()
        return {**self._about(vm, command.resource_id), "status": "accepted"}

    def request_of(self, command: CreateCompute) -> InstanceIn:
        """The ``createVm`` a createcompute makes (see docs/xmpp.md's mapping)."""
        share = DEFAULT_SHARE
        if command.sla is not None:
            if command.sla not in self._options.sla_shares:
                known = ", ".join(sorted(self._options.sla_shares)) or "none"
                raise InvalidInput(f"createcompute: unknown SLA level {command.sla!r} ({known})")
            share = self._options.sla_shares[command.sla]
        hints = {
            "slaLevel": command.sla,
            "template": command.template,
            "location": command.location,
            "resourceId": command.resource_id,
            "ismUserId": None if command.ism_user is None else str(command.ism_user),
        }
        return InstanceIn(
            name=command.hostname,
            cores=command.cores,
            memory=command.memory,
            cpuShare=share,
            disks=[DiskIn(uri=self._options.images.get(command.image, command.image))],
            hints={k: v for k, v in hints.items() if v is not None},
            userId=self._options.owner_id,
        )

    async def _adapt(self, command: AdaptCompute) -> dict[str, object]:
        if command.memory is not None or command.cores is not None:
            raise InvalidState(
                "Tashi cannot change the memory or the cores of an existing VM (no memory"
                " or CPU hot-plug); only its CPU share (cpu_share, adaptCpuShare) can change"
            )
        assert command.cpu_share is not None  # parse asks for one of the three
        vm = await self._api.adapt_cpu_share(command.ref, command.cpu_share)
        return {**self._about(vm, None), "command": "adaptcompute", "status": "done"}

    @staticmethod
    def _about(vm: InstanceOut, resource_id: str | None) -> dict[str, object]:
        out: dict[str, object] = {
            "command": "createcompute",
            "id": vm.id,
            "hostname": vm.name,
            "state": vm.state,
            "cpuShare": vm.cpuShare,
        }
        if resource_id is not None:
            out["resourceId"] = resource_id
        return out

    # --- completions --------------------------------------------------------------------------

    @property
    def awaited(self) -> list[int]:
        return sorted(self._awaited)

    async def recover(self) -> int:
        """Await again the VMs a createcompute made (``xmppReplyTo``) that have not run yet
        (at start, after a restart); how many."""
        found = 0
        for vm in await self._api.all_instances():
            sender = vm.hints.get(REPLY_TO)
            if sender is None or vm.state not in ON_THE_WAY or vm.id in self._awaited:
                continue
            if sender.partition("/")[0].lower() not in self._options.allowed:
                continue  # any user may set a hint: answers go to the allowed JIDs only
            deadline = self._clock() + self._options.wait_timeout
            resource_id = vm.hints.get("resourceId")
            self._awaited[vm.id] = _Awaited(sender, vm.name, resource_id, deadline)
            found += 1
        if found:
            log.info("XMPP: awaiting again %d createcompute from before the restart", found)
            self._new_work.set()
        return found

    async def watch(self) -> None:
        """Until cancelled: wait for work, then follow the change feed and answer the creations
        that ran or failed (a supervised loop body: it returns only on an error)."""
        while True:
            if not self._awaited:
                self._new_work.clear()
                await self._new_work.wait()
            await self.check(list(self._awaited))
            if self._awaited:
                soonest = min(a.deadline for a in self._awaited.values()) - self._clock()
                wait = max(0.1, min(FEED_WAIT, soonest))
                self._version = (await self._api.changes(self._version, wait)).version

    async def check(self, ids: Iterable[int]) -> None:
        """Read each awaited instance in ``ids`` and answer those that ran or failed."""
        for instance_id in ids:
            awaited = self._awaited.get(instance_id)
            if awaited is None:
                continue
            try:
                vm = await self._api.get_instance(instance_id)
            except NotFound:
                self._done(instance_id, "failed", reason="the instance is gone (destroyed?)")
                continue
            if vm.state == "Running":
                self._done(instance_id, "running", vm=vm)
            elif vm.state == "Exited":
                self._done(instance_id, "failed", vm=vm, reason=vm.reason or "it exited")
            elif awaited.deadline <= self._clock():
                why = f"not running after {self._options.wait_timeout:g} s (state {vm.state}"
                self._done(instance_id, "failed", vm=vm, reason=f"{why}: {vm.reason or '-'})")
            elif vm.state == "Held" and not awaited.held_told:
                awaited.held_told = True
                self._tell(awaited, instance_id, "held", vm, vm.reason or "no host can take it")

    def _done(
        self, instance_id: int, status: str, *, vm: InstanceOut | None = None, reason: str = ""
    ) -> None:
        awaited = self._awaited.pop(instance_id)
        self._tell(awaited, instance_id, status, vm, reason)

    def _tell(
        self, awaited: _Awaited, instance_id: int, status: str, vm: InstanceOut | None, reason: str
    ) -> None:
        document: dict[str, object] = {
            "command": "createcompute",
            "status": status,
            "id": instance_id,
            "hostname": awaited.hostname,
        }
        if awaited.resource_id is not None:
            document["resourceId"] = awaited.resource_id
        if vm is not None:
            document.update(state=vm.state, hostId=vm.hostId)
            if vm.nics and vm.nics[0].ip:
                document["ip"] = vm.nics[0].ip
        if reason:
            document["reason"] = reason
        log.info("XMPP: createcompute %s (%d) %s %s", awaited.hostname, instance_id, status, reason)
        self._answer(awaited.sender, document)


def _name(command: Command) -> str:
    names = {RegisterUser: "registerUser", UnregisterUser: "unregisterUser"}
    return names.get(type(command), type(command).__name__.lower())


def _id(ref: str, gone: InstanceOut | None) -> object:
    return gone.id if gone is not None else (int(ref) if ref.isdigit() else ref)
