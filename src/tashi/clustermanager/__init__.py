"""The cluster manager: it owns all cluster state and accepts user, agent and node requests.

``service.py`` composes one service per noun (instances, hosts, networks, users, images) plus
authentication (``auth.py``). Each method is one operation: it authorises the caller, validates
the request, and saves with compare-and-swap through the store. Placement is decided elsewhere
(the scheduler); VMs are run elsewhere (node managers, reached through ``nodes.py``).
"""
