"""HTTP plumbing shared by every Tashi server (the cluster manager's API, the node API):
the error table and JSON responses. It knows the domain's errors and nothing else of ours."""
