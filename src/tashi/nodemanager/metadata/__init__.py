"""Instance metadata for guests: ``http://169.254.169.254/`` as EC2 serves it, and a NoCloud seed.

Every VM the node manager runs reads its own metadata (instance id, image, type, address, key,
user data, identity document) from the link-local address AWS uses, the way cloud-init and the
AWS SDKs expect; images that cannot reach it may get the same data on a small ``cidata`` disk.
Why it is served here, and how a guest only ever sees its own:
``docs/adr/0018-instance-metadata.md``.

Modules, pure first:

* ``guests.py``: what one NIC's guest is told (``Guest``), made from the instance;
* ``tree.py``: the ``meta-data/`` tree, the user data and the identity document of a guest;
* ``tokens.py``: IMDSv2 session tokens (HMAC-signed, bound to the instance, with a TTL);
* ``answers.py``: an HTTP request in, AWS's answer out (versions, listings, IMDSv1 and v2);
* ``rules.py``: the nftables text that steers a tap's metadata traffic (pure);
* ``plumbing.py``: the kernel side (a veth pair, a sysctl, ``nft``), and ``fake.py`` its fake;
* ``server.py``: the one listener, HTTP/1.1 framing, a guest found by its connection's mark;
* ``service.py``: ``MetadataService``, what the node service calls as VMs come and go;
* ``nocloud.py``: the NoCloud seed disk (``genisoimage``).
"""
