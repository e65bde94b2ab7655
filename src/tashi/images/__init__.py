"""The shared image store: a directory every host mounts at the same path (``[Vfs] prefix``).

Disk images live in ``<prefix>/images``; users name them by file name, never by path.
"""
