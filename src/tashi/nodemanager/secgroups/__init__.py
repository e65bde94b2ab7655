"""Security groups, enforced: nftables on the taps of the VMs that are in groups, so that a guest
receives only what a rule of one of its groups lets in (and replies to its own connections), and
sends only with its own MAC and address. Why here and how: ``docs/adr/0019-security-groups.md``.

Modules, pure first:

* ``rules.py``: the nftables text (pure): a chain per guarded tap on its egress and ingress
  hooks, a chain per group, the reply marking;
* ``plumbing.py``: the kernel side (``nft``, a sysctl), and ``fake.py`` its fake;
* ``service.py``: ``FirewallService``, what the node service calls as VMs come and go and what
  the cluster manager's policy (``PUT /v1/firewall``) changes.
"""
