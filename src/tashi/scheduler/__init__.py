"""The scheduling agent (``tashi-scheduler``): places Pending and Held instances on hosts.

It talks to the cluster manager over HTTP only, as any agent of a site could; placement is a
pluggable policy (``policies/``) and site code runs around it as hooks (``hooks.py``).
"""
