"""Images for the cluster manager: getImages, copyImage, cloneImage, rebaseImage, removeImage.

**Decision: a copy, clone or rebase answers at once and runs as a server-side task.** Copying or
flattening a 20 GB image takes minutes: longer than any HTTP timeout a client should use (the
``tashi`` client's default is 30 s), and a request that waits would tie the result to one TCP
connection. So ``start`` first checks everything that can be refused (names, paths, links and
backing files out of the store, an existing destination, a missing source, a source a VM
writes) and raises at once, so refusals are ordinary errors; then it returns an ``ImageTask``
(HTTP 202) and does the work in an asyncio task of the cluster manager (qemu-img as a child
process, file copies on a small thread pool: the event loop never blocks). The new image appears
under its name only when it is complete (``tashi.images.operations`` writes to a hidden part
file, then links it), so ``getImages`` never shows a half-made image. A task (queued → running →
done | failed, with its error) is kept in memory for its owner to ask about; the ``tashi`` verbs
poll it until it ends, so on the command line they read as synchronous, and a client that goes
away does not stop the work. At most ``max_running`` tasks run at once; the others queue. Tasks
are not persisted: a cluster manager that stops ends its tasks (failed, ``Unavailable``), and the
part files of one that was killed are removed at the next start (``ImageOps.sweep``).

**Who may do what.** Any user (role user or admin) may make a new image from any image of the
store (images are public, as in the original); the task records who asked, and the log says who
made which image. Only an admin may remove an image, and not one an instance uses: any instance
that is not Exited and names it, or a link of the store that leads to it, as a disk. The store
has no query by disk, so every instance is read and its disks checked here (one read per
removal; fine for the thousands of instances a Tashi cluster holds). A VM's image lock and
another image backed by it refuse the removal too (``ImageOps.remove``). A copy, clone or rebase
of an image some instance uses as a *persistent* disk is refused: the copy would be torn, and a
clone's base would change under it. (A ``copy`` disk's template is only read, once: not refused.)

**SLA@SOI image copy.** An instance whose disk asks for its own copy of a template gets it from
``copy_for_instance`` while it is in ``PreparingDisk``: the very same checks, task and atomic
write as copyImage, but awaited by the cluster manager itself (``InstanceService.activate_vm``)
on behalf of the scheduler or admin that activates it; the task is listed like any other.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime

from tashi.clustermanager.accounts.auth import require_admin, require_role
from tashi.clustermanager.database import Database
from tashi.domain import validation
from tashi.domain.clock import Clock
from tashi.domain.errors import (
    AlreadyExists,
    BackendFailure,
    InvalidState,
    NotFound,
    TashiError,
    Unavailable,
)
from tashi.domain.ids import UserId
from tashi.domain.models import DiskConfig, Image, Instance, Principal, Role
from tashi.domain.states import InstanceState
from tashi.images import qemuimg
from tashi.images.operations import ImageOps, Op, Plan
from tashi.images.store import ImageStore

log = logging.getLogger(__name__)

MAX_RUNNING = 2  # image tasks at once: each reads and writes a whole image on the shared store
KEEP_FINISHED = 200  # finished tasks remembered for their owners to ask about


class TaskState(enum.Enum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


@dataclass(frozen=True, slots=True)
class ImageTask:
    """One copy, clone or rebase, as its owner sees it."""

    id: int
    op: Op
    src: str
    dst: str
    user_id: UserId
    user: str
    state: TaskState
    created: datetime
    started: datetime | None = None
    finished: datetime | None = None
    image: Image | None = None  # when done
    error: TashiError | None = None  # when failed


class ImageService:
    def __init__(
        self,
        store: ImageStore,
        db: Database,
        clock: Clock,
        *,
        qemu_img: str = qemuimg.QEMU_IMG,
        max_running: int = MAX_RUNNING,
    ) -> None:
        self.store = store
        self._db = db
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_running, thread_name_prefix="tashi-image")
        self.ops = ImageOps(store, self._executor, qemu_img=qemu_img)
        self._slots = asyncio.Semaphore(max_running)
        self._sweep_lock = asyncio.Lock()
        self._swept = False
        self._tasks: dict[int, ImageTask] = {}
        self._running: dict[int, asyncio.Task[ImageTask]] = {}
        self._making: dict[str, int] = {}  # destination name -> task id
        self._reading: dict[int, str] = {}  # task id -> source name
        self._next_id = 1

    # --- copy, clone, rebase ----------------------------------------------------------------

    async def start(self, caller: Principal, op: Op, src: str, dst: str) -> ImageTask:
        """Check, then start making ``dst`` from ``src``; the task (queued or running)."""
        require_role(caller, Role.user, Role.admin, doing=f"{op.value}Image")
        return await self._start(caller, op, src, dst)

    async def make(self, caller: Principal, op: Op, src: str, dst: str) -> Image:
        """``start``, then wait for the image (EC2's RegisterImage answers with one). Raises
        what ``start`` refuses or the task's error; a failed task leaves no file behind."""
        require_role(caller, Role.user, Role.admin, doing=f"{op.value}Image")
        task = await self._start(caller, op, src, dst)
        return await self._finished(task)

    async def _finished(self, task: ImageTask) -> Image:
        ended = await self._running[task.id]  # not done yet: ``_start`` did not yield since
        if ended.image is None:
            raise ended.error or BackendFailure(f"image task {task.id} ended without an image")
        return ended.image

    async def copy_for_instance(self, caller: Principal, src: str, dst: str) -> Image:
        """Make ``dst``, a full copy of the template ``src``, for an instance being activated
        by ``caller`` (the scheduler or an admin: the instance service checked who may), and
        wait for it. Raises what copyImage refuses (``dst`` exists, ``src`` is missing or a
        persistent disk, ...) or the task's error; a failed copy leaves no file behind."""
        return await self._finished(await self._start(caller, Op.copy, src, dst))

    async def root_disk(self, caller: Principal, src: str, dst: str) -> Image:
        """``dst``, an instance's own root disk: a thin clone of ``src`` made at once
        (``ImageOps.thin_clone``), removed with ``discard_copy`` when the instance ends."""
        require_role(caller, Role.user, Role.admin, doing="launching instances")
        return await asyncio.to_thread(self.ops.thin_clone, src, dst)

    async def discard_copy(
        self, name: str, why: str = "made for an instance that no longer wanted it"
    ) -> None:
        """Remove an image ``copy_for_instance`` made that no instance uses any more (the
        instance changed state meanwhile, or was terminated: ``why``). ``InvalidState`` if
        something uses it after all."""
        await asyncio.to_thread(functools.partial(self.ops.remove, name, unique=True))
        log.warning("removed image %s, %s", name, why)

    async def _start(self, caller: Principal, op: Op, src: str, dst: str) -> ImageTask:
        validation.image_name(src)
        validation.image_name(dst)
        await self._sweep_once()
        if dst in self._making:
            raise AlreadyExists(f"image {dst!r} is being made already (task {self._making[dst]})")
        task_id = self._next_id
        self._next_id += 1
        self._making[dst] = task_id  # reserved before any await, so two requests cannot race
        try:
            await self._refuse_persistent_use(src)
            plan = await self.ops.plan(op, src, dst)
        except BaseException:
            del self._making[dst]
            raise
        task = ImageTask(
            task_id, op, src, dst, caller.user_id, caller.name, TaskState.queued, self._now()
        )
        self._tasks[task_id] = task
        self._reading[task_id] = src
        self._running[task_id] = asyncio.create_task(self._run(task, plan), name=f"image-{dst}")
        log.info(
            "%s started %s of image %s to %s (task %d)", caller.name, op.value, src, dst, task_id
        )
        return task

    async def _sweep_once(self) -> None:
        """At the first operation, before any part file is ours: remove a killed manager's."""
        async with self._sweep_lock:
            if not self._swept:
                stale = await asyncio.to_thread(self.ops.sweep)
                if stale:
                    log.warning("removed unfinished image files %s", ", ".join(stale))
                self._swept = True

    async def _run(self, task: ImageTask, plan: Plan) -> ImageTask:
        try:
            async with self._slots:
                self._save(replace(task, state=TaskState.running, started=self._now()))
                image = await self.ops.make(plan)
        except TashiError as exc:
            log.warning(
                "image task %d (%s %s to %s) failed: %s",
                task.id,
                task.op.value,
                task.src,
                task.dst,
                exc.message,
            )
            return self._end(task.id, error=exc)
        except asyncio.CancelledError:
            self._end(task.id, error=Unavailable("the cluster manager stopped before it was done"))
            raise
        except Exception as exc:  # supervision boundary: a bug must not pass unnoticed
            log.exception(
                "image task %d (%s %s to %s) failed", task.id, task.op.value, task.src, task.dst
            )
            return self._end(task.id, error=BackendFailure(f"internal error: {type(exc).__name__}"))
        else:
            log.info("%s made image %s (%s of %s)", task.user, task.dst, task.op.value, task.src)
            return self._end(task.id, image=image)
        finally:
            plan.lock.release()  # ``make`` does, unless the task ended while queued
            del self._making[task.dst]
            self._reading.pop(task.id, None)
            self._running.pop(task.id, None)

    def _save(self, task: ImageTask) -> None:
        self._tasks[task.id] = task

    def _end(
        self, task_id: int, *, image: Image | None = None, error: TashiError | None = None
    ) -> ImageTask:
        state = TaskState.failed if error is not None else TaskState.done
        ended = replace(
            self._tasks[task_id], state=state, finished=self._now(), image=image, error=error
        )
        self._tasks[task_id] = ended
        finished = [t for t in self._tasks.values() if t.finished is not None]
        for old in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._tasks[old.id]
        return ended

    def _now(self) -> datetime:
        return self._clock.now()

    async def task(self, caller: Principal, task_id: int) -> ImageTask:
        """One task of the caller's (any task for an admin)."""
        task = self._tasks.get(task_id)
        if task is None or not (caller.is_trusted or task.user_id == caller.user_id):
            raise NotFound(
                f"there is no image task {task_id} of yours (finished ones are kept"
                f" for the last {KEEP_FINISHED} tasks)"
            )
        return task

    async def tasks(self, caller: Principal) -> list[ImageTask]:
        """The caller's tasks (an admin's: everyone's), oldest first."""
        return [t for t in self._tasks.values() if caller.is_trusted or t.user_id == caller.user_id]

    # --- removal ----------------------------------------------------------------------------

    async def remove(self, caller: Principal, name: str) -> Image:
        """removeImage (admin): the image as it was, removed with its direct-boot sidecars."""
        require_admin(caller, "removeImage")
        validation.image_name(name)
        for task_id, src in self._reading.items():
            if src == name:
                raise InvalidState(
                    f"image {name!r} is being read by image task {task_id}: try when it ends"
                )
        users = await self._instances_using(name, persistent_only=False)
        if users:
            raise InvalidState(
                f"image {name!r} is a disk of {_named(users)}: remove it when"
                " no instance uses it any more"
            )
        image = await asyncio.to_thread(self.ops.remove, name)
        log.warning("%s removed image %s", caller.name, name)
        return image

    async def _refuse_persistent_use(self, src: str) -> None:
        users = await self._instances_using(src, persistent_only=True)
        if users:
            raise InvalidState(
                f"image {src!r} is the persistent disk of {_named(users)}:"
                " copy it when the instance has ended"
            )

    async def _instances_using(self, name: str, *, persistent_only: bool) -> list[Instance]:
        names = await asyncio.to_thread(self._aliases, name)
        instances = await self._db.read(lambda tx: tx.instances.find())
        return [
            i
            for i in instances
            if i.state is not InstanceState.Exited
            and any(d.uri in names and (_writes(d) or not persistent_only) for d in i.disks)
        ]

    def _aliases(self, name: str) -> set[str]:
        """``name`` and every name of the store that leads to the same file (links)."""
        target = self.store.path_of(name)
        names = {name}
        with os.scandir(self.store.images_dir) as entries:
            for entry in entries:
                if entry.is_symlink() and os.path.realpath(entry.path) == str(target):
                    names.add(entry.name)
        return names

    async def page(
        self, caller: Principal, after: int | None = None, limit: int | None = None
    ) -> list[tuple[int, Image]]:
        """getImages paged: the images with their ids (place in name order), ids greater than
        ``after``, at most ``limit`` of them."""
        return await asyncio.to_thread(self.store.page, after, limit)

    async def list(self, caller: Principal) -> list[Image]:  # last: ``list`` in annotations
        """getImages: every authenticated caller sees every image."""
        return await asyncio.to_thread(self.store.list)

    async def aclose(self) -> None:
        """Stop every task (their part files are removed) and the copy threads."""
        for running in list(self._running.values()):
            running.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)


def _writes(disk: DiskConfig) -> bool:
    """Whether a VM of the instance writes the image itself (a copy disk's template is read)."""
    return disk.persistent and not disk.copy


def _named(instances: list[Instance]) -> str:
    shown = ", ".join(f"{i.name} ({i.id})" for i in instances[:5])
    more = f" and {len(instances) - 5} more" if len(instances) > 5 else ""
    return f"instance{'s' if len(instances) > 1 else ''} {shown}{more}"
