"""Composition roots: each builds one program from its parts and runs it (``main()``)."""
