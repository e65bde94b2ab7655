"""Virtual machine monitors: the driver contract (``base.py``), a registry of drivers by name,
the fake driver for unit tests and simulations, and the QEMU driver (``qemu/``)."""
