"""Host networking for the node manager: how a VM's NICs reach their networks.

``base.py`` is the driver contract, ``registry.py`` resolves ``[NodeManager] network`` to a driver,
``fake.py`` is the in-memory driver for unit tests, ``bridge.py`` the original convention (a bridge
per network id, or a ``qemu-ifup.<networkId>`` script). ``taps.py`` holds what every driver that
makes taps shares (names, ownership marks), and ``netlink.py`` is the one module that talks to
the kernel (through pyroute2). The node manager hands the ``NicSpec``s drivers return to the VMM
driver (``tashi.vmm``). See ``docs/adr/0007-host-networking-and-disks.md``.
"""
