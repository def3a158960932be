"""Import every command module so that each registers its commands on the group."""

from __future__ import annotations

from cellvec.cli import (  # noqa: F401
    _annotate,
    _bench,
    _genes,
    _genes_index,
    _reference,
    _reference_ops,
    _search,
)
