"""The node manager: runs and watches the VMs of one host.

``service.py`` carries out the cluster manager's requests (start, stop, pause, suspend, migrate)
through a VMM driver (``tashi.vmm``), a network driver (``tashi.network``) and the disk
preparation in ``disks.py``; ``reporting.py`` registers the host and sends heartbeats and VM
events; ``routes.py`` serves the node API (``tashi.nodeapi``).
"""
