"""Verbs that make and remove images: copyImage, cloneImage, rebaseImage, getImageTasks, and
removeImage (admin). ``getImages`` lives with the other listings in ``cluster.py``.

The cluster manager does the work as a task and answers at once (``POST /v1/images`` → 202);
these verbs then poll the task until it ends (``TashiClient.wait_image_task``), so they read as
synchronous and a big image never meets the client's timeout. ``--nowait`` prints the task and
returns; ``getImageTasks`` shows how it goes. Names are checked here as the server checks them
(an image name, never a path), so a typo costs no round trip; the server checks again.
"""

from __future__ import annotations

from collections.abc import Callable

from tashi.api.schemas import ImageTaskOut
from tashi.client.errors import UsageError
from tashi.client.tables import Column, TableSpec, attributes, human_size
from tashi.client.verbs.base import Args, Context, Option, Output, Verb, dump, table_output
from tashi.domain import validation
from tashi.domain.errors import InvalidInput

TASK_TABLE: TableSpec[ImageTaskOut] = TableSpec(
    columns=(
        *attributes("id", "op", "src", "dst", "state", "user", "createdAt", "startedAt"),
        *attributes("finishedAt"),
        Column("error", lambda t: None if t.error is None else t.error.message),
    ),
    default=("id", "op", "src", "dst", "state", "user", "finishedAt"),
)


def parse_image_name(text: str) -> str:
    try:
        return validation.image_name(text.strip())
    except InvalidInput as exc:
        raise UsageError(exc.message) from None


SRC = Option(
    "src",
    "The image to start from (a name from getImages).",
    parse_image_name,
    required=True,
    metavar="IMAGE",
)
DST = Option(
    "dst",
    "The new image's name; it must not exist.",
    parse_image_name,
    required=True,
    metavar="NAME",
)
NOWAIT = Option(
    "nowait",
    "Return once the cluster manager has accepted the work; getImageTasks shows how it goes.",
    flag=True,
)

_DONE = {
    "copy": "Image {dst} copied from {src} ({size}).",
    "clone": "Image {dst} cloned from {src} ({size}): a qcow2 overlay whose backing file is {src}.",
    "rebase": "Image {dst} made from {src} as a standalone qcow2 ({size}).",
}
_DOING = {"copy": "Copying", "clone": "Cloning", "rebase": "Flattening"}


def _image_verb(op: str) -> Callable[[Context, Args], Output]:
    def run(ctx: Context, args: Args) -> Output:
        src, dst = args.text("src"), args.text("dst")
        task = ctx.client.start_image_task(op, src, dst)
        if args["nowait"]:
            text = (
                f"{_DOING[op]} {src} to {dst} in the background (task {task.id}): 'tashi"
                f" getImageTasks' shows how it goes; 'tashi getImages' lists {dst} once it is done."
            )
            return Output(raw=dump(task), text=text)
        done = ctx.client.wait_image_task(task.id)
        size = "-" if done.image is None else human_size(done.image.imageSize)
        return Output(raw=dump(done), text=_DONE[op].format(src=src, dst=dst, size=size))

    return run


def get_image_tasks(ctx: Context, args: Args) -> Output:
    tasks = ctx.client.get_image_tasks()
    return table_output(TASK_TABLE, tasks, args, dump(tasks))


def remove_image(ctx: Context, args: Args) -> Output:
    image = ctx.client.remove_image(args.text("image"))
    return Output(raw=dump(image), text=f"Image {image.imageName} removed.")


_WAITS = (
    " The cluster manager does the work; this command waits until it is done (Ctrl-C stops"
    " waiting, not the work) unless --nowait is given. The new image appears in getImages only"
    " once it is complete. Its direct-boot files (.kernel, .initrd, .cmdline) are copied too."
)

VERBS = (
    Verb(
        "copyImage",
        "cluster",
        "Copy an image of the image store under a new name.",
        _image_verb("copy"),
        (SRC, DST, NOWAIT),
        description="Make --dst a byte-for-byte copy of --src, e.g. to give a VM its own"
        " persistent disk." + _WAITS,
        examples=(
            "tashi copyImage --src debian.qcow2 --dst alice-web.qcow2",
            "tashi copyImage --src big.img --dst big-copy.img --nowait",
        ),
    ),
    Verb(
        "cloneImage",
        "cluster",
        "Make a qcow2 overlay backed by an image.",
        _image_verb("clone"),
        (SRC, DST, NOWAIT),
        description="Make --dst a small qcow2 image whose backing file is --src: it reads as"
        " --src and stores only what is written to it later. --src must then stay (removeImage"
        " refuses it while the clone exists); rebaseImage makes the clone standalone." + _WAITS,
        examples=("tashi cloneImage --src debian.qcow2 --dst debian-lab.qcow2",),
    ),
    Verb(
        "rebaseImage",
        "cluster",
        "Flatten an image into a standalone qcow2.",
        _image_verb("rebase"),
        (SRC, DST, NOWAIT),
        description="Make --dst a qcow2 image with the content of --src and its whole backing"
        " chain, with no backing file of its own (qemu-img convert)." + _WAITS,
        examples=("tashi rebaseImage --src debian-lab.qcow2 --dst debian-lab-flat.qcow2",),
    ),
    Verb(
        "getImageTasks",
        "cluster",
        "List your image copies, clones and rebases, running and recently ended.",
        get_image_tasks,
        description="The cluster manager keeps the last 200 ended tasks until it restarts. An"
        " admin sees everyone's.",
        examples=("tashi getImageTasks", "tashi getImageTasks --show-error"),
        table=TASK_TABLE,
    ),
    Verb(
        "removeImage",
        "admin",
        "Remove an image no instance uses.",
        remove_image,
        (Option("image", "The image's name.", parse_image_name, required=True, metavar="IMAGE"),),
        description="Remove the image and its direct-boot files. Refused while an instance"
        " (not Exited) names it as a disk, a VM holds it, another image uses it as its backing"
        " file, or an image task reads it.",
        examples=("tashi removeImage --image debian-lab.qcow2",),
    ),
)
