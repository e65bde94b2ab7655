"""The config files ``tashi-cluster`` writes, read back as the daemons read them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tashi.config.cluster import ClusterSettings
from tashi.config.loader import RawConfig, load_raw, parse_settings
from tashi.daemons.scheduler import policy_options
from tashi.devcluster import configs
from tashi.devcluster.processes import write_config
from tashi.devcluster.state import Layout, State


def read(program: str, sections: configs.Sections, tmp_path: Path) -> RawConfig:
    path = write_config(tmp_path / f"{program}.cfg", sections)
    return load_raw(program, dirs=[], env={"TASHI_CONFIG": str(path)})


def test_the_scheduler_plans_with_the_cluster_managers_over_commit(tmp_path: Path) -> None:
    settings = dataclasses.replace(ClusterSettings(), cpu_cores_over_rate=4.0)
    state = State(tag="t", fabric="198.18.0.0/20", cm_port=9882, networks=[1, 2], cgroup="/x")
    layout = Layout(tmp_path / "cluster")
    cm = parse_settings(
        read("ClusterManager", configs.cm_config(settings, state, layout), tmp_path)
    )
    raw = read("Agent", configs.agent_config(settings, state, layout, "secret"), tmp_path)
    limits = policy_options(parse_settings(raw), raw).limits
    assert cm.cluster_manager_service.cpu_cores_over_rate == 4.0
    assert limits.cores_over_rate == cm.cluster_manager_service.cpu_cores_over_rate
