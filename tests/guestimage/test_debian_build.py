"""The parts of the Debian guest's build that need no mmdebstrap run: the command, the files the
guest gets and how ds-identify reads them, the root filesystem's finishing, the cache, and the
reproducible root disk (the image itself and its boot: ``test_debian_image.py``)."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest

from tashi.domain.errors import BackendFailure
from tashi.guestimage import cli, debian, debianfiles, rootfs, steps

EPOCH = debianfiles.SOURCE_DATE_EPOCH


def test_mmdebstrap_installs_the_packages_in_namespaces_of_its_own_with_the_cache(
    tmp_path: Path,
) -> None:
    argv = debian.mmdebstrap_argv(tmp_path / "rootfs", tmp_path / "cache", tmp_path / "setup")
    assert argv[: argv.index("mmdebstrap")] == [
        "unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child"
    ]  # fmt: skip
    assert "--mode=root" in argv and "--format=directory" in argv
    included = next(arg for arg in argv if arg.startswith("--include="))
    assert included.removeprefix("--include=").split(",") == list(debianfiles.PACKAGES)
    assert {"cloud-init", "openssh-server", "linux-image-cloud-amd64"} <= set(debianfiles.PACKAGES)
    assert f"--hook-dir={debian.MERGED_USR_HOOKS}" in argv  # no usrmerge, hence no perl
    assert f"--setup-hook=sync-in {tmp_path / 'cache'} /var/cache/apt/archives/" in argv
    assert f"--setup-hook=sync-in {tmp_path / 'setup'} /" in argv
    assert f"--customize-hook=sync-out /var/cache/apt/archives/ {tmp_path / 'cache'}" in argv
    assert "--skip=essential/unlink" in argv  # else mmdebstrap deletes what the cache keeps
    suite = argv.index(debianfiles.SUITE)
    assert argv[suite + 1 :] == [str(tmp_path / "rootfs"), *debianfiles.SOURCES]


def _ds_identify_value(text: str, key: str) -> str | None:
    """What ds-identify's check_config reads for ``key``: it strips each line (``read``), cuts
    comments and takes the rest of a line ``key: value``."""
    found = None
    for line in text.splitlines():
        line = line.strip().split("#")[0]
        if line.startswith(f"{key}: "):
            found = line.partition(":")[2].strip()
    return found


def test_cloud_init_tries_nocloud_then_ec2_without_the_aws_platform_check() -> None:
    files = debianfiles.FILES
    cfg = files["etc/cloud/cloud.cfg.d/90_tashi.cfg"]
    # ds-identify reads datasource_list only when it is on one line.
    assert _ds_identify_value(cfg, "datasource_list") == "[ NoCloud, Ec2 ]"
    ec2 = [name for name in files if fnmatch.fnmatch(name, "etc/cloud/cloud.cfg.d/*[Ee][Cc]2*.cfg")]
    assert len(ec2) == 1, "ds-identify reads strict_id from cloud.cfg.d/*ec2*.cfg only"
    assert _ds_identify_value(files[ec2[0]], "strict_id") == "false"
    assert '"http://169.254.169.254"' in files[ec2[0]]
    policy = _ds_identify_value(files["etc/cloud/ds-identify.cfg"], "policy")
    assert policy == "search,found=all,maybe=all,notfound=disabled"
    assert "network: {config: disabled}" in cfg  # ifupdown's eth0, not cloud-init's
    assert "iface eth0 inet dhcp" in files["etc/network/interfaces"]
    assert "net.ifnames=0" in debianfiles.CMDLINE.split()


def test_sshd_takes_keys_only_and_every_vm_makes_its_own_host_keys() -> None:
    sshd = dict(
        line.split(None, 1)
        for line in debianfiles.FILES["etc/ssh/sshd_config.d/50-tashi.conf"].splitlines()
        if line and not line.startswith("#")
    )
    assert sshd["PasswordAuthentication"] == "no"
    assert sshd["KbdInteractiveAuthentication"] == "no"
    assert sshd["AuthenticationMethods"] == "publickey"
    assert "etc/ssh/ssh_host_*" in debianfiles.REMOVED


def _fake_root(root: Path) -> None:
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(
        "Package: cloud-init\nStatus: install ok installed\nArchitecture: all\n"
        "Version: 22.4.2-1+deb12u4\nDescription: x\n continued: not a field\n\n"
        "Package: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1\n\n"
        "Package: busybox-static\nStatus: install ok installed\nArchitecture: amd64\n"
        "Version: 1:1.35.0-4+b3\n"
    )
    (root / "etc/ssh").mkdir(parents=True)
    (root / "etc/ssh/ssh_host_ed25519_key").write_text("secret")
    (root / "etc/ssh/sshd_config").write_text("# Debian's\n")
    (root / "etc/resolv.conf").symlink_to("/run/elsewhere")


def test_the_root_filesystem_gets_its_files_masks_and_times(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    _fake_root(root)
    packages = rootfs.finish(root)
    assert [p.line() for p in packages] == [
        "busybox-static\t1:1.35.0-4+b3\tamd64",
        "cloud-init\t22.4.2-1+deb12u4\tall",
    ]
    assert packages[0].deb_name() == "busybox-static_1%3a1.35.0-4+b3_amd64.deb"
    for relative, text in debianfiles.FILES.items():
        assert (root / relative).read_text() == text
    assert not (root / "etc/resolv.conf").is_symlink()
    for unit in debianfiles.MASKED_UNITS:
        assert os.readlink(root / "etc/systemd/system" / unit) == "/dev/null"
    assert not (root / "etc/ssh/ssh_host_ed25519_key").exists()
    assert (root / "etc/ssh/sshd_config").exists()


def test_the_cache_keeps_the_debs_of_the_image_only(tmp_path: Path) -> None:
    packages = [rootfs.Package("cloud-init", "22.4.2-1+deb12u4", "all")]
    cache = tmp_path / "cache"
    (cache / "partial").mkdir(parents=True)
    (cache / "partial" / "half.deb").write_text("")
    for name in ("cloud-init_22.4.2-1+deb12u4_all.deb", "cloud-init_22.4.2-1_all.deb", "lock"):
        (cache / name).write_text("")
    rootfs.prune_cache(cache, packages)
    assert sorted(p.name for p in cache.iterdir()) == ["cloud-init_22.4.2-1+deb12u4_all.deb"]


def test_the_kernel_and_initramfs_are_found_in_boot_or_the_build_says_what_it_found(
    tmp_path: Path,
) -> None:
    (tmp_path / "boot").mkdir()
    with pytest.raises(BackendFailure, match="expected one boot/vmlinuz"):
        rootfs.boot_files(tmp_path)
    for name in ("vmlinuz-6.1.0-57-cloud-amd64", "initrd.img-6.1.0-57-cloud-amd64"):
        (tmp_path / "boot" / name).write_text("")
    vmlinuz, initrd = rootfs.boot_files(tmp_path)
    assert (vmlinuz.name, initrd.name) == (
        "vmlinuz-6.1.0-57-cloud-amd64",
        "initrd.img-6.1.0-57-cloud-amd64",
    )


def _disk(tree: Path, work: Path) -> str:
    work.mkdir()
    image = work / "disk.qcow2"
    fixed = ["-U", debian.FS_UUID, "-E", f"hash_seed={debian.FS_HASH_SEED}"]
    steps.ext4_qcow2(image, tree, work, 16, label="t", options=fixed, epoch=EPOCH, compress=True)
    return hashlib.sha256(image.read_bytes()).hexdigest()


def test_the_same_files_copied_at_another_time_give_the_same_root_disk(tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "etc").mkdir(parents=True)
    (source / "etc" / "hostname").write_text("debian\n")
    (source / "etc" / "name with space").write_text("x\n")
    (source / "link").symlink_to("etc/hostname")
    digests = []
    for copy in ("one", "two"):
        tree = tmp_path / copy
        shutil.copytree(source, tree, symlinks=True)  # new change times, which no call sets
        digests.append(_disk(tree, tmp_path / f"work-{copy}"))
        for directory, names, files in os.walk(tree):
            for name in [*names, *files, "."]:
                assert os.lstat(os.path.join(directory, name)).st_mtime <= EPOCH
        time.sleep(1.1)  # the second copy's times are a second later, and so is mke2fs's clock
    assert digests[0] == digests[1]


def test_the_recipe_covers_the_guest_files_and_the_size(tmp_path: Path) -> None:
    options = debian.DebianOptions(out_dir=tmp_path)
    assert options.recipe() == debian.DebianOptions(out_dir=tmp_path / "other").recipe()
    assert options.recipe() != debian.DebianOptions(out_dir=tmp_path, size_mb=2048).recipe()
    assert debianfiles in debian._RECIPE_MODULES and rootfs in debian._RECIPE_MODULES
    assert not options.is_current()
    assert options.cache == tmp_path / ".cache" / "debian"
    assert options.manifest.name == ".tashi-debian.qcow2.manifest"


def test_tashi_image_debian_says_it_needs_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cli.main(["debian", "--out", str(tmp_path)]) == 1
    assert "tashi-image: error: the Debian image is built by mmdebstrap in root mode" in (
        capsys.readouterr().err
    )
    assert not list(tmp_path.iterdir())
