"""Lazy re-exports for a package's public face: each name's module is imported on its first use.

A face that imports every submodule up front makes ``from indexer import InputError`` pay for anndata,
pandas, scipy and scikit-learn; the CLI's start (``cellvec --help``, ``cellvec reference list``) would then
take over a second. With this, a face costs what its callers use. *PEP 562; scipy's and scanpy's lazy faces.*
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_face(face: str, homes: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return a module ``__getattr__`` and ``__dir__`` that load ``homes[name]`` (a module path) on first use.

    Parameters
    ----------
    face
        The package whose face this is (its ``__name__``).
    homes
        Each lazily exported name and the module that defines it.

    Returns
    -------
    ``(__getattr__, __dir__)`` to assign in the package's ``__init__``.
    """

    def __getattr__(name: str) -> Any:  # a PEP 562 hook
        home = homes.get(name)
        if home is None:
            msg = f"module '{face}' has no attribute '{name}'"
            raise AttributeError(msg)
        value = getattr(import_module(home), name)
        setattr(sys.modules[face], name, value)  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:  # a PEP 562 hook
        return sorted({*vars(sys.modules[face]), *homes})

    return __getattr__, __dir__
