"""Front-ends: each parses its protocol, calls one service method, and renders the result.

``rest/`` is the native HTTP/JSON API (``tashi.api``); EC2 and OCCI front-ends come later.
Front-ends never touch storage or hypervisors.
"""
