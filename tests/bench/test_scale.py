"""A small step of ``python -m bench scale``: 50 hollow hosts on a real ``tashi-cm`` (SQLite).

The benchmark's figures are its own business (docs/scaling.md); this checks that it measures:
the hollow hosts register, get their VMs started by the cluster manager, and have their
heartbeats answered; every call is timed; both tables carry every column.
"""

from __future__ import annotations

import pytest
from bench.cluster import Workspace
from bench.scaleprobes import CALLS

from bench import scale, scalereport


@pytest.mark.timeout(180)
def test_a_small_step_of_hollow_hosts_is_measured(capsys: pytest.CaptureFixture[str]) -> None:
    plan = scale.plan_for(
        quick=True,
        stores=("sqlite",),
        max_hosts=None,
        steps=None,
        vms_per_host=None,
        period=None,
    )
    workspace = Workspace()
    try:
        done = scale.run_store("sqlite", plan, workspace, lambda _message: None)
    finally:
        workspace.remove()
    empty, step = done["steps"]
    assert (empty["hosts"], step["hosts"]) == (0, 50)
    assert step["vms"] == 50 * plan.vms_per_host  # started by the cluster manager on them
    beats = step["heartbeats"]
    assert beats["answered"] > 0
    assert beats["answered_per_s"] > 0.5 * beats["offered_per_s"]  # it is not overloaded
    assert step["cm"]["cpu_ms_per_heartbeat"] > 0
    assert step["vms_fenced"] == 0
    for call in CALLS:
        assert empty["calls"][call]["count"] > 0
        assert step["calls"][call]["count"] > 0
    assert step["activate_group"]["count"] > 0
    scalereport.print_tables([done])
    out = capsys.readouterr().out
    for column in scalereport.BEAT_HEADER + scalereport.CALL_HEADER:
        assert column in out
