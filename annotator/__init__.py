"""Annotate cells against a cellvec reference."""
