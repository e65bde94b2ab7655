"""Key pairs: users' SSH keys for the guests they launch (EC2's CreateKeyPair, ImportKeyPair,
DescribeKeyPairs, DeleteKeyPair): the material and its fingerprints (``material.py``), the
service (``service.py``)."""
