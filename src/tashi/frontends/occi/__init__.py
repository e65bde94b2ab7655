"""The OCCI 1.2 front-end (docs/occi.md): compute, network and storage over Tashi's services,
in the text (GFD.229) and JSON (GFD.226) renderings, served by the cluster manager on its own
listener (``[OCCI]``)."""
