"""Builds Tashi's tiny default guest from Debian packages: ``tashi-image build``.

Output, in an image store directory (``<prefix>/images``), for ``--name tashi-tiny``::

    tashi-tiny.qcow2            root disk: ext4 (mke2fs -d, no mount) with busybox, qcow2, 64 MiB
    tashi-tiny.qcow2.kernel     Tashi's kernel: an ELF vmlinux (PVH boot)
    tashi-tiny.qcow2.initrd     gzip newc cpio: busybox, /init (and modules, for Debian's kernel)
    tashi-tiny.qcow2.cmdline    DEFAULT_CMDLINE (console=ttyS0 root=/dev/vda rw quiet ...)
    .tashi-tiny.qcow2.bzimage   the same kernel as a bzImage, for bootloaders (hidden)

The kernel is Tashi's own by default (``tashi.guestimage.kbuild``): compiled once from Debian's
``linux-source`` with only what the guest uses, all built in, and cached. With ``kernel="debian"``
it is Debian's ``linux-image-cloud-amd64`` with its modules in the initramfs: the ``.kernel``
sidecar is then the uncompressed ELF ``vmlinux`` when the package's bzImage holds one with a PVH
entry point (``tashi.guestimage.vmlinux``), so that QEMU enters it in protected mode, skipping the
real-mode setup and the decompression; otherwise the bzImage itself, and the build says why.
SYSLINUX and other bootloaders need a bzImage: ``bzimage_of(image)`` gives it either way.

The convention (``tashi.images.boot``): an image with a ``.kernel`` file (and optional ``.initrd``,
``.cmdline``) beside it is booted directly with ``-kernel``/``-initrd``/``-append``; an image
without one is booted from its own bootloader. The guest's behaviour (markers on the serial
console, DHCP on every NIC, power-off on the ACPI button) is in ``tashi.guestimage.guestfiles`` and
``docs/guest-image.md``.

Nothing here needs root or mounts anything: packages are fetched with ``apt-get download`` and
unpacked with ``dpkg-deb -x`` (``tashi.guestimage.debs``, cached beside the output in
``.cache/``), the initramfs is written by ``tashi.guestimage.cpio`` and the root disk by
``mke2fs -d``. The build happens in a hidden directory of the output directory; the files are
renamed into place at the end, the image itself last, so a present image always has its
sidecars. A lock file keeps two builds of one image apart. A hidden ``.<image>.recipe`` file
holds a digest of the modules that define the guest and of the options: an image built by
another recipe is rebuilt without ``--force``.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tashi.domain import validation
from tashi.domain.errors import BackendFailure, InvalidInput
from tashi.guestimage import cpio, debs, guestfiles, kbuild, kmod, steps, vmlinux
from tashi.guestimage.commands import require, run
from tashi.guestimage.steps import Say, step

DEFAULT_NAME = "tashi-tiny"
# Each option past `quiet` saves CPU or keeps a guest alive whose vCPU is starved (a boot storm
# of 100 TCG guests on 2 cores, measured here):
# - cryptomgr.notests: no crypto self-tests at boot, about 0.3 CPU-s per boot under TCG;
# - no_timer_check: the IO-APIC timer check fails when the vCPU gets too little time, and the
#   kernel then panics ("IO-APIC + timer doesn't work!": 37 of 100 guests of a storm);
# - tsc=reliable: no clocksource watchdog, which marks a starved guest's TSC unstable and falls
#   back to the HPET, tripling its CPU (a 100-guest storm took 159 s instead of 457 s);
# - pci=nomsi: INTx at once. The PCI bus is ACPI's, which a volume needs (EC2's AttachVolume):
#   only ACPI PCI hotplug tells the guest of a disk plugged into a running VM or asks it to let
#   one go, and only ACPI's routing table gives an interrupt to a slot that was empty at boot.
#   `pci=noacpi` (the BIOS table, nothing hot-plugged) saved 0.3 CPU-s of a boot under TCG:
#   1.42 against 1.73 s, median of 4 boots each, measured when it was dropped;
# - noreplace-smp: a kernel that finds one CPU rewrites every `lock` prefix of its text to a
#   no-op, and under TCG each write to translated code throws its translations away: about 0.19
#   CPU-s per boot (1.58 against 1.77 s, median of 8), the locked instructions cost nothing here;
# - init_on_alloc=0: Debian's kernel zeroes every page and slab object it hands out (a hardening
#   default, CONFIG_INIT_ON_ALLOC_DEFAULT_ON), and under TCG each zeroing store is emulated: 3 to
#   12 % less CPU per boot in three runs of 20 to 32 boots two at a time (1.83 against 1.89 s,
#   1.65 against 1.77, 1.62 against 1.84). The guest's own memory is all it would protect.
DEFAULT_CMDLINE = (
    "console=ttyS0 root=/dev/vda rw quiet cryptomgr.notests no_timer_check tsc=reliable"
    " pci=nomsi noreplace-smp init_on_alloc=0"
)
DEFAULT_SIZE_MB = 64

# Loaded by the initramfs, dependencies first (the closure is computed from the modules).
# virtio_pci pulls in virtio, virtio_ring and virtio_pci_{modern,legacy}_dev; virtio_net pulls in
# failover and net_failover. ext4 is built into Debian 12's cloud kernel (with jbd2, mbcache,
# crc16, crc32c); it is listed so that a kernel with ext4 as a module still works. button (the
# ACPI power button) and evdev (/dev/input/event*) let acpid see QEMU's system_powerdown.
REQUIRED_MODULES = ["virtio_pci", "virtio_net", "virtio_blk", "ext4", "button", "evdev"]
OPTIONAL_MODULES = ["crc32c_generic"]

# The kernels a build can put in the image: Tashi's own, compiled from Debian's kernel source
# with only what the guest uses (tashi.guestimage.kbuild; the default), or Debian's cloud kernel
# package as it comes, with its modules in the initramfs.
TASHI_KERNEL = "tashi"
DEBIAN_KERNEL = "debian"
KERNELS = (TASHI_KERNEL, DEBIAN_KERNEL)

REQUIRED_PROGRAMS = ("apt-get", "apt-cache", "dpkg-deb", "mke2fs", "qemu-img", "lz4")

BZIMAGE_SUFFIX = steps.BZIMAGE_SUFFIX

# The modules whose text decides what the image holds (see BuildOptions.recipe).
_RECIPE_MODULES = (sys.modules[__name__], guestfiles, cpio, kbuild, kmod, vmlinux, steps)


@dataclass(frozen=True, slots=True)
class BuildOptions:
    out_dir: Path
    name: str = DEFAULT_NAME
    force: bool = False
    cache_dir: Path | None = None
    size_mb: int = DEFAULT_SIZE_MB
    cmdline: str = DEFAULT_CMDLINE
    kernel: str = TASHI_KERNEL

    def __post_init__(self) -> None:
        validation.image_name(f"{self.name}.qcow2")  # InvalidInput for "../x", "a/b", ...
        if self.kernel not in KERNELS:
            raise InvalidInput(f"kernel {self.kernel!r} is not one of {', '.join(KERNELS)}")

    @property
    def image(self) -> Path:
        return self.out_dir / f"{self.name}.qcow2"

    @property
    def cache(self) -> Path:
        return self.cache_dir or self.out_dir / ".cache" / "debs"

    @property
    def kernel_cache(self) -> Path:
        """Where built kernels are kept (``tashi.guestimage.kbuild``), beside the .deb files."""
        return self.cache / "kernels"

    @property
    def recipe_file(self) -> Path:
        return self.out_dir / f".{self.image.name}.recipe"

    def recipe(self) -> str:
        """A digest of what decides the image's content: the recipe modules and the options."""
        options = f"{self.size_mb} {self.cmdline} {self.kernel}"
        return steps.recipe_digest(options, _RECIPE_MODULES)

    def is_current(self) -> bool:
        """Whether the image and its sidecars exist and were built by this recipe."""
        return steps.stamped(self.recipe_file, self.recipe(), steps.outputs(self.image))


@dataclass(frozen=True, slots=True)
class BuildResult:
    image: Path
    built: bool
    seconds: float
    kernel_version: str = ""
    modules: list[str] = field(default_factory=list)

    def outputs(self) -> list[Path]:
        """The image, its sidecars and its hidden bzImage, as written."""
        return steps.outputs(self.image)


def is_complete(image: Path) -> bool:
    """Whether ``image``, all three of its direct-boot sidecars and its bzImage exist."""
    return all(path.is_file() for path in BuildResult(image, False, 0.0).outputs())


def bzimage_of(image: Path) -> Path:
    """The kernel of a built image as a bzImage, for a bootloader (SYSLINUX cannot load an ELF
    vmlinux): the ``.<image>.bzimage`` the build kept beside it.

    ``BackendFailure`` when it is missing (an image built before it was kept: build again)."""
    path = steps.bzimage_path(image)
    if not path.is_file():
        raise BackendFailure(f"{image} has no {path.name}: build it again with tashi-image")
    return path


def build(options: BuildOptions, say: Say = print) -> BuildResult:
    """Build the image unless it is already complete (or ``force``); idempotent.

    Raises ``BackendFailure`` when a tool is missing or fails (``BuildOptions`` raises
    ``InvalidInput`` for a name that is not a plain file name)."""

    def before() -> None:
        for program in REQUIRED_PROGRAMS:
            require(program)

    def work(scratch: Path) -> _Build:
        return _Build(options, scratch, say).run()

    done, seconds = steps.build_once(options, before, work, say)
    if done is None:
        return BuildResult(options.image, built=False, seconds=seconds)
    return BuildResult(options.image, True, seconds, done.kernel_version, done.modules)


@dataclass(slots=True)
class _Build:
    """One build in a scratch directory ``work`` (inside the output directory)."""

    options: BuildOptions
    work: Path
    say: Say
    kernel_version: str = ""
    modules: list[str] = field(default_factory=list)

    def run(self) -> _Build:
        apt = debs.Apt(self.options.cache, self.say)
        out = self.work / "out"
        out.mkdir()
        busybox_deb = self._fetch(apt, debs.BUSYBOX)
        if self.options.kernel == DEBIAN_KERNEL:
            kernel_line, modules = self._debian_kernel(apt, out)
        else:
            kernel_line, modules = self._tashi_kernel(apt, out), None
        with step(self.say, "unpacked busybox (dpkg-deb -x)"):
            busybox_root = debs.unpack(busybox_deb.path, self.work / "busybox")
        release = (
            f"{self.options.name}: Tashi tiny guest\n{kernel_line}\n"
            f"busybox {busybox_deb.package} {busybox_deb.version}\n"
        )
        userland = self.work / "rootfs"
        with step(self.say, f"userland: busybox and the guest scripts in {userland.name}/"):
            _make_userland(userland, busybox_root, release)
        with step(self.say, f"initramfs: {len(self.modules)} modules, /init, busybox"):
            _write_initramfs(out / "initrd", userland, modules)
        with step(self.say, f"root disk: ext4 of {self.options.size_mb} MiB, as qcow2"):
            _make_root_disk(out / "image.qcow2", userland, self.work, self.options.size_mb)
        (out / "cmdline").write_text(self.options.cmdline + "\n")
        self._commit(out)
        return self

    def _fetch(self, apt: debs.Apt, package: str) -> debs.Deb:
        with step(self.say, f"package {package}"):
            deb = apt.fetch(package)
        how = "downloaded" if deb.downloaded else "cached"
        self.say(f"  {deb.package} {deb.version}: {how} {deb.path}")
        return deb

    def _tashi_kernel(self, apt: debs.Apt, out: Path) -> str:
        """Tashi's own kernel (``tashi.guestimage.kbuild``): ``out/kernel`` and ``out/bzimage``."""
        with step(self.say, "resolved the kernel source package"):
            package = apt.source_package()
        deb = self._fetch(apt, package)
        with step(self.say, "kernel: Tashi's configuration of " + package):
            built = kbuild.build(
                deb.path, deb.version, self.options.kernel_cache, self.work, self.say
            )
        how = "cached" if built.cached else "built"
        self.say(f"  Linux {built.release}: {how} {built.vmlinux.parent}")
        self.kernel_version = built.release
        shutil.copyfile(built.vmlinux, out / "kernel")
        shutil.copyfile(built.bzimage, out / "bzimage")
        return f"kernel Linux {built.release}, Tashi's configuration of {package} {deb.version}"

    def _debian_kernel(
        self, apt: debs.Apt, out: Path
    ) -> tuple[str, tuple[kmod.ModuleTree, kmod.LoadPlan]]:
        """Debian's cloud kernel: ``out/kernel``, ``out/bzimage`` and the modules to load."""
        with step(self.say, "resolved the kernel package"):
            package = apt.kernel_package()
        deb = self._fetch(apt, package)
        with step(self.say, "unpacked the kernel package (dpkg-deb -x)"):
            kernel_root = debs.unpack(deb.path, self.work / "kernel")
        vmlinuz, tree = _kernel_files(kernel_root)
        self.kernel_version = tree.version
        load = self._plan_modules(tree)
        steps.write_kernel(vmlinuz, out, self.say)
        return f"kernel {deb.package} {deb.version}", (tree, load)

    def _plan_modules(self, tree: kmod.ModuleTree) -> kmod.LoadPlan:
        load = kmod.plan(tree, REQUIRED_MODULES, OPTIONAL_MODULES)
        self.modules = [name for name, _ in load.load]
        self.say(f"kernel {tree.version}: modules {' '.join(self.modules)}")
        if load.builtin:
            self.say(f"  built in, nothing to load: {' '.join(load.builtin)}")
        return load

    def _commit(self, out: Path) -> None:
        options = self.options
        steps.commit(out, options.image, options.recipe_file, options.recipe(), self.say)


def _kernel_files(kernel_root: Path) -> tuple[Path, kmod.ModuleTree]:
    kernels = sorted((kernel_root / "boot").glob("vmlinuz-*"))
    trees = sorted((kernel_root / "lib" / "modules").glob("*/kernel"))
    if len(kernels) != 1 or len(trees) != 1:
        raise BackendFailure(
            f"expected one boot/vmlinuz-* and one lib/modules/*/ in the kernel package,"
            f" found {[p.name for p in kernels]} and {[p.parent.name for p in trees]}"
        )
    return kernels[0], kmod.ModuleTree(trees[0].parent)


def _make_userland(root: Path, busybox_root: Path, release: str) -> None:
    """busybox with a link per applet, the guest scripts and the empty directories."""
    busybox = busybox_root / "bin" / "busybox"
    if not busybox.is_file():
        raise BackendFailure(f"{debs.BUSYBOX} has no bin/busybox")
    (root / "bin").mkdir(parents=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    for applet in run([busybox, "--list-full"]).split():
        link = root / applet
        if "/" not in applet or link.exists():
            continue  # linuxrc: not wanted; bin/busybox: the binary itself
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")
    for relative, (text, mode) in guestfiles.files(release).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
    for relative in guestfiles.DIRECTORIES:
        (root / relative).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)


def _write_initramfs(
    path: Path, userland: Path, modules: tuple[kmod.ModuleTree, kmod.LoadPlan] | None
) -> None:
    """The initramfs: the userland, /init, and the modules it loads (none for Tashi's kernel,
    which has its drivers built in)."""
    entries = cpio.entries_from_tree(userland)
    entries.append(cpio.directory("newroot"))
    entries.append(cpio.char_device("dev/console", 5, 1))
    entries.append(cpio.regular("init", guestfiles.INIT.encode(), 0o755))
    listed = []
    if modules is not None:
        tree, load = modules
        base = f"lib/modules/{tree.version}"
        for _, module in load.load:
            relative = f"{base}/{module.relative_to(tree.root).as_posix()}"
            entries.append(cpio.regular(relative, module.read_bytes()))
            listed.append(relative.removeprefix("lib/modules/"))
    entries.append(cpio.regular("etc/tashi/modules", "".join(f"{m}\n" for m in listed).encode()))
    names = {entry.name for entry in entries}
    for entry in list(entries):
        parent = Path(entry.name).parent
        while str(parent) != "." and str(parent) not in names:
            entries.append(cpio.directory(str(parent)))
            names.add(str(parent))
            parent = parent.parent
    cpio.write_gzip(sorted(entries, key=lambda entry: entry.name), path)


def _make_root_disk(image: Path, userland: Path, work: Path, size_mb: int) -> None:
    # root_owner: the files belong to the (maybe non-root) builder; / is made root's.
    options = ["-E", "root_owner=0:0"]
    steps.ext4_qcow2(image, userland, work, size_mb, label="tashi-root", options=options)
