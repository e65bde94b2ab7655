"""The config files ``tashi-cluster`` writes, read back as the daemons read them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tashi.config.loader import load_raw, load_settings
from tashi.config.settings import ClusterSettings, Settings
from tashi.daemons.scheduler import policy_options
from tashi.devcluster import configs
from tashi.devcluster.processes import write_config
from tashi.devcluster.state import Layout, State


def read(program: str, sections: configs.Sections, tmp_path: Path) -> Settings:
    path = write_config(tmp_path / f"{program}.cfg", sections)
    return load_settings(program, dirs=[], env={"TASHI_CONFIG": str(path)})


def test_the_scheduler_plans_with_the_cluster_managers_over_commit(tmp_path: Path) -> None:
    settings = dataclasses.replace(ClusterSettings(), cpu_cores_over_rate=4.0)
    state = State(tag="t", fabric="198.18.0.0/20", cm_port=9882, networks=[1, 2], cgroup="/x")
    layout = Layout(tmp_path / "cluster")
    cm = read("ClusterManager", configs.cm_config(settings, state, layout), tmp_path)
    agent_sections = configs.agent_config(settings, state, layout, "secret")
    agent = read("Agent", agent_sections, tmp_path)
    raw = load_raw("Agent", dirs=[], env={"TASHI_CONFIG": str(tmp_path / "Agent.cfg")})
    limits = policy_options(agent, raw).limits
    assert cm.cluster_manager_service.cpu_cores_over_rate == 4.0
    assert limits.cores_over_rate == cm.cluster_manager_service.cpu_cores_over_rate
