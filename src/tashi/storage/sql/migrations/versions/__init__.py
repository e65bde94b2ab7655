"""Hand-written schema revisions, oldest first: ``0001_initial`` and its successors."""
