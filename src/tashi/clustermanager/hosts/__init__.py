"""Hosts: their administration, the node managers' reports, liveness, HA leases and witnesses, and
the gateway the cluster manager calls node managers through."""
