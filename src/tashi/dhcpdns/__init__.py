"""DHCP and DNS for VMs: the ``DhcpDns`` scheduler hook (``hook.py``) and its backends.

The hook allocates each NIC's address through the cluster manager (the database keeps it) and
publishes a static DHCP lease and DNS records through a backend (``backends/``: dnsmasq, fake).
"""
