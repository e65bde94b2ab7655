"""The QEMU driver: VMs as daemonized ``qemu-system-x86_64`` processes driven through QMP.

``cmdline`` builds the argv (a pure function), ``process`` launches and watches processes by
pidfd, ``monitor`` is the one seam to ``qemu.qmp``, ``cgroups`` the CPU weights, ``probe`` the
KVM check, ``vm`` one VM's record and its exit handling, ``transfer`` suspend, restore and live
migration, ``calls`` the ``vmmSpecificCall`` operations, ``driver`` the ``VmmDriver`` itself.
Decisions: ``docs/adr/0006-qemu-driver.md``.
"""
