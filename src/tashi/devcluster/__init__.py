"""``tashi-cluster``: a whole Tashi cluster on one machine (seed 002's ssi-start/add/rm/stop).

``processes`` is the one process harness (daemons by pid, waits with deadlines) that the
end-to-end tests and the benchmarks share; ``fabric`` makes the network namespaces and links of
the virtual hosts; ``cluster`` and ``cli`` start, extend, crash and stop a cluster whose state
lives in a state directory (``state``), so each subcommand may run in a later invocation.
``targets`` names what ``rm`` and ``add`` act on, ``control`` crashes and restarts single
control-plane pieces, ``dhcp`` runs the dnsmasqs, ``strays`` ends what node managers leave
outside the records (watchdogs, boot slots), ``configs`` writes the daemons' config files.
"""
