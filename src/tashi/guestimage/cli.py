"""``tashi-image``: build Tashi's guest images. The work is in ``tashi.guestimage.builder`` (the
tiny guest) and ``tashi.guestimage.debian`` (Debian with cloud-init and OpenSSH).

    tashi-image build [--out DIR] [--name tashi-tiny] [--force] [--cache DIR]
                      [--kernel tashi|debian]
    tashi-image debian [--out DIR] [--name tashi-debian] [--force] [--cache DIR]

``--out`` is an image store directory (``<[Vfs] prefix>/images``); the default ``var/images`` is
the one ``make image`` and ``make debian-image`` fill. Exit status 0 on success (also when the
image was already there), 1 with a one-line ``tashi-image: error: …`` when a tool fails, 2 for
bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tashi.domain.errors import TashiError
from tashi.guestimage import builder, debian


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tashi-image", description="Build Tashi's guest images from Debian packages."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser(
        "build",
        help="build <name>.qcow2 and its .kernel/.initrd/.cmdline sidecars",
        description="Build the tiny guest: a root disk <name>.qcow2 and the direct-boot"
        " sidecars <name>.qcow2.kernel, .initrd and .cmdline, in DIR.",
    )
    _common(build, builder.DEFAULT_NAME, "downloaded .deb files and built kernels", "debs")
    build.add_argument(
        "--kernel", choices=builder.KERNELS, default=builder.TASHI_KERNEL,
        help="tashi (default): a kernel with only what the guest uses, compiled once from"
        " Debian's linux-source (3 to 4 minutes on 2 cores, then cached); debian: Debian's"
        " cloud kernel package as it comes, with its modules (boots about twice as slowly)",
    )  # fmt: skip
    image = commands.add_parser(
        "debian",
        help="build Debian 12 with cloud-init and OpenSSH (mmdebstrap, as root)",
        description="Build a Debian 12 guest with cloud-init (NoCloud, Ec2) and OpenSSH (keys"
        " only) with mmdebstrap, as root: <name>.qcow2 and its .kernel/.initrd/.cmdline"
        " sidecars, in DIR.",
    )
    _common(image, debian.DEFAULT_NAME, "the .deb files", "debian")
    return parser


def _common(command: argparse.ArgumentParser, name: str, cached: str, cache: str) -> None:
    """The options every build takes: --out, --name, --force, --cache."""
    command.add_argument(
        "--out", type=Path, default=Path("var/images"), metavar="DIR",
        help="image store directory to write to (default: var/images)",
    )  # fmt: skip
    command.add_argument(
        "--name", default=name, help=f"image name without .qcow2 (default: {name})"
    )
    command.add_argument("--force", action="store_true", help="rebuild even if the image exists")
    command.add_argument(
        "--cache", type=Path, default=None, metavar="DIR",
        help=f"where {cached} are kept (default: DIR/.cache/{cache})",
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    def say(line: str) -> None:
        print(f"tashi-image: {line}", flush=True)

    try:
        if args.command == "debian":
            image = debian.DebianOptions(
                out_dir=args.out, name=args.name, force=args.force, cache_dir=args.cache
            )
            debian.build(image, say)
        else:
            options = builder.BuildOptions(
                out_dir=args.out,
                name=args.name,
                force=args.force,
                cache_dir=args.cache,
                kernel=args.kernel,
            )
            builder.build(options, say)
    except TashiError as exc:
        print(f"tashi-image: error: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
