"""Tashi's guest kernel configuration: what the builder checks after ``allnoconfig``.

The compilation itself runs in the session's ``tiny_image`` fixture on a clean machine, and the
kernel it gives boots in ``test_guest_boot`` and everywhere else a VM runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tashi.domain.errors import BackendFailure
from tashi.guestimage import kbuild


def test_every_required_option_is_in_the_fragment() -> None:
    fragment = {line for line in kbuild.FRAGMENT.splitlines() if line.endswith("=y")}
    for option in kbuild.REQUIRED:
        assert f"CONFIG_{option}=y" in fragment


def test_a_config_without_an_option_names_what_is_missing() -> None:
    full = "".join(f"CONFIG_{option}=y\n" for option in kbuild.REQUIRED)
    assert kbuild.missing_options(full) == []
    partial = full.replace("CONFIG_VIRTIO_NET=y\n", "# CONFIG_VIRTIO_NET is not set\n")
    partial = partial.replace("CONFIG_PVH=y\n", "CONFIG_PVH=m\n")
    assert kbuild.missing_options(partial) == ["PVH", "VIRTIO_NET"]


def test_tinyconfig_comes_first_and_the_fragment_last(tmp_path: Path) -> None:
    for part in ("kernel/configs", "arch/x86/configs"):
        (tmp_path / part).mkdir(parents=True)
        (tmp_path / part / "tiny.config").write_text(f"# {part}\nCONFIG_PVH=n\n")
    text = kbuild._fragment_of(tmp_path)
    assert text.index("# kernel/configs") < text.index("# arch/x86/configs")
    assert text.rindex("CONFIG_PVH=n") < text.index("CONFIG_PVH=y")  # a later line wins


def test_the_built_kernel_of_the_session_is_cached_whole(tiny_image: Path) -> None:
    cache = tiny_image.parent / ".cache" / "debs" / "kernels"
    # the newest: a cache kept from before a change of the kernel's options holds older ones
    kernel = max(
        (path for path in cache.iterdir() if not path.name.startswith(".")),
        key=lambda path: path.stat().st_mtime,
    )
    assert {path.name for path in kernel.iterdir()} == {"vmlinux", "bzImage", "config", "release"}
    assert kbuild.missing_options((kernel / "config").read_text()) == []
    assert (kernel / "release").read_text().startswith("6.")


def test_a_deb_without_the_source_tarball_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BackendFailure):
        kbuild._unpack(tmp_path / "no-such.deb", tmp_path / "linux", lambda _: None)


def test_make_gets_absolute_paths_when_the_build_directory_is_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``make -C <tree>`` runs in the tree, so a relative KCONFIG_ALLCONFIG is not found there
    (``tashi-image build --out var/images`` failed so on a clean clone)."""
    monkeypatch.chdir(tmp_path)
    tree = tmp_path / "work" / "linux" / "linux-source-6.1"
    for part in ("kernel/configs", "arch/x86/configs"):
        (tree / part).mkdir(parents=True)
        (tree / part / "tiny.config").write_text("")
    calls: list[list[str]] = []

    def run(argv: list[str | Path], **_: object) -> str:
        calls.append([str(arg) for arg in argv])
        if argv[0] == "make":
            raise BackendFailure("stopped here")
        return "gcc (Debian 12.2.0-14) 12.2.0\n"

    monkeypatch.setattr(kbuild, "run", run)
    monkeypatch.setattr(kbuild, "_unpack", lambda deb, into, say: into / "linux-source-6.1")
    with pytest.raises(BackendFailure, match="stopped here"):
        kbuild.build(Path("x.deb"), "6.1.1-1", Path("cache"), Path("work"), lambda _: None)
    (make,) = [argv for argv in calls if argv[0] == "make"]
    allconfig = next(arg for arg in make if arg.startswith("KCONFIG_ALLCONFIG="))
    assert Path(allconfig.partition("=")[2]).is_absolute()
    assert Path(make[make.index("-C") + 1]).is_absolute()
    assert Path(allconfig.partition("=")[2]).is_file()
