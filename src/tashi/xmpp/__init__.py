"""SLA@SOI's XMPP integration: the control daemon ``tashi-xmpp`` (``commands``, ``control``)
and the event publisher of ``tashi-cm`` (``publisher``, ``documents``, ``outbox``), both on one
kept-up connection (``session``, the one module that imports slixmpp). See docs/xmpp.md.
"""
