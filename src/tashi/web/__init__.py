"""HTTP plumbing shared by every Tashi server (the cluster manager's API, the node API):
the error table and JSON responses (``errors``, ``json``), what a client may send (``limits``:
the body cap and deadline) and how uvicorn serves it all (``server``: the head deadline and
cap, connection limits). It knows the domain's errors and nothing else of ours."""
