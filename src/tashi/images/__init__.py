"""The shared image store: a directory every host mounts at the same path (``[Vfs] prefix``).

Disk images live in ``<prefix>/images``; users name them by file name, never by path. This is
what the daemons use: listing (``store``), the image operations and their ``qemu-img`` seam
(``operations``, ``qemuimg``, ``filecopy``), image locks (``locks``), VM overlays (``qcow2``),
and the conventions the tiny guest shares with them: its direct-boot sidecars (``boot``) and the
lines it prints on its console (``markers``). The guest's build toolchain is
``tashi.guestimage``, which imports this package and is never imported by it.
"""
