"""Routes for images: getImages, copy/clone/rebase (202 and a task to poll), removeImage.

``POST /v1/images`` with ``{"op", "src", "dst"}`` answers **202** with an image task: the work
runs in the cluster manager and the image appears in ``getImages`` only when it is complete (why:
``tashi.clustermanager.images.service``). Refusals (bad names, an existing destination, a missing
source, ...) are answered at once with the usual error body. An image's ``id`` is its position in
``getImages``, as in the original.
"""

from __future__ import annotations

from fastapi import APIRouter

from tashi.api import paths
from tashi.api import schemas as s
from tashi.clustermanager.images.service import ImageTask
from tashi.clustermanager.service import ClusterService
from tashi.domain.models import Image, Principal
from tashi.frontends.rest import render
from tashi.frontends.rest.deps import (
    BODY,
    CONFLICT,
    PAGE,
    ROLE,
    After,
    Caller,
    Limit,
    may_fail,
)
from tashi.images.operations import Op
from tashi.web import errors
from tashi.web.json import JsonResponse


def router(service: ClusterService) -> APIRouter:
    api = APIRouter(tags=["images"])
    images = service.images

    async def names(caller: Principal, *tasks: ImageTask) -> list[str]:
        """The names in ``getImages`` order, when one of ``tasks`` has made its image."""
        if not any(t.image is not None for t in tasks):
            return []
        return [i.name for i in await images.list(caller)]

    def task_json(task: ImageTask, names: list[str]) -> render.Json:
        error, image = task.error, task.image
        return {
            "id": task.id,
            "op": task.op.value,
            "src": task.src,
            "dst": task.dst,
            "userId": task.user_id,
            "user": task.user,
            "state": task.state.value,
            "createdAt": task.created,
            "startedAt": task.started,
            "finishedAt": task.finished,
            "image": None if image is None else render.image(_position(names, image), image),
            # a failure's detail went to the log when the task ended, under its task id
            "error": None
            if error is None
            else {"code": error.code, "message": errors.public_message(error)},
        }

    @api.get(
        paths.IMAGES,
        response_model=list[s.ImageOut],
        summary="getImages",
        responses=may_fail(PAGE),
    )
    async def get_images(caller: Caller, after: After = None, limit: Limit = None) -> JsonResponse:
        """An image's id is its place in name order (images are files, not rows), so a page
        after an id moves when images are added or removed before it."""
        found = await images.page(caller, after, limit)
        return JsonResponse([render.image(i, img) for i, img in found])

    @api.post(
        paths.IMAGES,
        response_model=s.ImageTaskOut,
        status_code=202,
        summary="copyImage, cloneImage, rebaseImage",
        responses=may_fail(BODY, ROLE, 404, CONFLICT),
    )
    async def make_image(caller: Caller, body: s.ImageOpIn) -> JsonResponse:
        task = await images.start(caller, Op(body.op), body.src, body.dst)
        return JsonResponse(task_json(task, []), status_code=202)

    @api.delete(
        paths.IMAGE,
        response_model=s.ImageOut,
        summary="removeImage (admin)",
        responses=may_fail(400, ROLE, 404, CONFLICT),
    )
    async def remove_image(caller: Caller, name: str) -> JsonResponse:
        before = [i.name for i in await images.list(caller)]
        image = await images.remove(caller, name)
        return JsonResponse(render.image(_position(before, image), image))

    @api.get(
        paths.IMAGE_TASKS,
        response_model=list[s.ImageTaskOut],
        summary="getImageTasks",
        responses=may_fail(),
    )
    async def get_tasks(caller: Caller) -> JsonResponse:
        tasks = await images.tasks(caller)
        listed = await names(caller, *tasks)
        return JsonResponse([task_json(t, listed) for t in tasks])

    @api.get(
        paths.IMAGE_TASK,
        response_model=s.ImageTaskOut,
        summary="getImageTask",
        responses=may_fail(400, 404),
    )
    async def get_task(caller: Caller, task: int) -> JsonResponse:
        found = await images.task(caller, task)
        return JsonResponse(task_json(found, await names(caller, found)))

    return api


def _position(names: list[str], image: Image) -> int:
    """An image's id: its position in ``getImages`` (-1 once it is not listed)."""
    return names.index(image.name) if image.name in names else -1
