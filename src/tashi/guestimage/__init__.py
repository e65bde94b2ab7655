"""The tiny guest's build toolchain: ``tashi-image build`` and what it is made of.

``builder`` makes the image from Debian packages (``debs``), Tashi's own kernel (``kbuild``, or
Debian's with ``kmod``'s module order and ``vmlinux``'s PVH extraction), an initramfs (``cpio``)
and the guest's own files (``guestfiles``); ``bootable`` makes a disk that boots from its own
bootloader; ``commands`` is the one seam that runs foreign programs. It writes into the image
store the daemons read (``tashi.images``: the sidecar convention, the console markers), but no
daemon imports it: it runs on a build machine, from ``make image`` or the tests.
"""
