"""``make demo``'s control-plane phase (scripts/demo_cluster.py) judges honestly whether the VMs
ran on through the cluster manager's crash: any qemu gone or replaced, or any instance not
Running, is a failure (the demo then exits non-zero). The phase itself needs a real cluster:
``make demo`` runs it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "demo_cluster.py"


@pytest.fixture(scope="module")
def demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_cluster", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["demo_cluster"] = module
    spec.loader.exec_module(module)
    return module


def test_the_same_qemus_all_running_is_a_success(demo: ModuleType) -> None:
    before = {"demo-1": 100, "demo-2": 200}
    assert demo.survived(before, dict(before), {"demo-1": "Running", "demo-2": "Running"}) == []


def test_a_vm_stopped_by_its_node_manager_is_a_failure(demo: ModuleType) -> None:
    problems = demo.survived(
        {"demo-1": 100, "demo-2": 200, "demo-3": 300},
        {"demo-1": 100, "demo-3": 301},
        {"demo-1": "Running", "demo-2": "Orphaned", "demo-3": "Running"},
    )
    assert problems == [
        "demo-2: its qemu (pid 200) is gone",
        "demo-3: its qemu changed (pid 300, now 301)",
        "demo-2: Orphaned, not Running",
    ]
