"""The public HTTP/JSON API of the cluster manager, versioned under ``/v1``.

``schemas.py`` holds the wire models (pydantic, camelCase names as Tashi users know them:
``userId``, ``hostId``, ``cpuShare``); ``paths.py`` the routes. The REST front-end implements
this contract and the client SDK consumes it; neither imports the other.
"""
