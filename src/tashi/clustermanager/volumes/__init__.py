"""Volumes and snapshots (EC2's EBS): ``service`` (a user's volumes and snapshots, their files),
``attachments`` (volumes in and out of instances, on running VMs through their node managers)."""
