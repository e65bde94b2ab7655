"""Tashi's benchmark: ``python -m bench [all|control|nodes]`` (``make bench``: all).

The control suite measures a real ``tashi-cm`` on SQLite and PostgreSQL: it starts a cluster
manager subprocess on loopback (``cluster.py``), drives ``createVm`` and ``GET /health`` with a
closed-loop HTTP load generator in this process (``load.py``), times ``getInstances`` of 10,000
and 100,000 stored instances (``listing.py``), measures the database floors in-process
(``floors.py``) and prints one table of figures, baselines, ratios and the issue's floors
(``report.py``); ``runner.py`` puts the phases in order.

The node suite measures Tashi on real QEMU against the same qemu run by hand: a cluster manager
and QEMU node managers (``nodecluster.py``), boot to the guest's console marker (``boot.py``),
live migration (``migrate.py``), node-manager memory (``nmmemory.py``), the hand-run baseline
(``bareqemu.py``), other processes' CPU (``neighbours.py``), its table and JSON
(``nodereport.py``); ``nodes.py`` puts the phases in order.

``__main__.py`` parses the command line. What each row means: ``docs/benchmarks.md``.
"""
