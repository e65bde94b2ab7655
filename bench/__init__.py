"""Tashi's benchmark: ``python -m bench`` (``make bench``) measures a real ``tashi-cm``.

For SQLite and PostgreSQL it starts a cluster manager subprocess on loopback (``cluster.py``),
drives ``createVm`` and ``GET /health`` with a closed-loop HTTP load generator in this process
(``load.py``), times ``getInstances`` of 10,000 and 100,000 stored instances (``listing.py``),
measures the database floors in-process (``floors.py``) and prints one table of figures,
baselines, ratios and the issue's floors (``report.py``). ``runner.py`` puts the phases in order;
``__main__.py`` parses the command line. What each row means: ``docs/benchmarks.md``.
"""
