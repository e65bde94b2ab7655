"""DHCP/DNS backends: the contract (``base.py``), the registry, and one module per backend."""
