"""The cluster manager <-> node manager contract, both directions, in one place.

``paths.py`` holds the routes of both sides, ``schemas.py`` the wire models, ``convert.py``
the one conversion between them and the records the services use (``tashi.domain.nodes``),
``timeouts.py`` how long each call may take, ``cmclient.py`` the node manager's client of the
cluster manager and ``nmclient.py`` the cluster manager's client of a node manager; both
clients take and return the services' records.

Authentication. A node manager logs in to the cluster manager with a user of role ``node`` and
registers its host; the cluster manager binds the host to that user and refuses reports about
the host from anyone else. At registration the node manager also hands the cluster manager a
random secret; it accepts calls only when they carry that secret as their bearer token, so only
the cluster manager it registered with can drive its VMs.
"""
