"""The virtual-cluster harness moved to ``tashi.devcluster.harness`` (tests and benchmarks share
it); this name is kept for modules not yet changed."""

from tashi.devcluster.harness import Running, admin_client, running_cluster

__all__ = ["Running", "admin_client", "running_cluster"]
