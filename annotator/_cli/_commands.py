"""Import every command module so that each registers its commands on the group."""

from __future__ import annotations

from . import (  # noqa: F401
    _annotate_cli,
    _bench_cli,
    _genes_cli,
    _genes_index_cli,
    _reference_cli,
    _reference_ops_cli,
    _search_cli,
)
