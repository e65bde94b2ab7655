"""Security groups: users' groups and their inbound rules (EC2's CreateSecurityGroup,
DescribeSecurityGroups, AuthorizeSecurityGroupIngress, RevokeSecurityGroupIngress,
DeleteSecurityGroup): the service (``service.py``) and what keeps every host's node manager
enforcing the policy of its VMs' groups (``sync.py``)."""
