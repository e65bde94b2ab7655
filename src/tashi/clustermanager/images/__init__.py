"""Images as the cluster manager serves them: the image verbs, and a VM's own persistent copy of a
template (SLA@SOI's image copy)."""
