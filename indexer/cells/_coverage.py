"""How much of a reference's gene panels a query has: reported, warned about, refused when too little."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer._errors import InputError, PanelCoverageWarning

if TYPE_CHECKING:
    from indexer.cells._artifacts import Artifacts

WARN_BELOW = 0.9
"""A query that has less than this share of a reference panel gets a :class:`PanelCoverageWarning`."""
REFUSE_BELOW = 0.1
"""A query that has less than this share of every reference panel is refused (its labels would be guesses)."""

_VIEWS = {
    "text": "text-panel genes (described genes its cells pool)",
    "expression": "expression-panel genes (highly variable genes)",
}


def panel_coverage(symbols: np.ndarray, artifacts: Artifacts) -> dict[str, dict[str, Any]]:
    """Count, per view, how many of the reference's panel genes the query has.

    Parameters
    ----------
    symbols
        Official symbol of each query ``var`` entry (``""`` when unmapped).
    artifacts
        The reference's artefacts: the text panel (genes its cells pool) and the expression panel (HVG).
        A view whose panel the reference did not record (built before panels were recorded) is left out.

    Returns
    -------
    ``{view: {"panel": n_panel_genes, "present": n_in_query, "fraction": present / panel,
    "missing_examples": [...]}}`` for the views ``"text"`` and ``"expression"`` the reference uses.
    """
    have = {str(s) for s in symbols if s}
    panels: dict[str, np.ndarray] = {}
    if artifacts.text_panel is not None:
        panels["text"] = artifacts.text_panel
    if artifacts.expression is not None:
        panels["expression"] = np.asarray(artifacts.expression.genes)
    out: dict[str, dict[str, Any]] = {}
    for view, genes in panels.items():
        names = [str(g) for g in genes if g]
        present = np.array([g in have for g in names], dtype=bool)
        out[view] = {
            "panel": len(names),
            "present": int(present.sum()),
            "fraction": float(present.mean()) if names else 1.0,
            "missing_examples": [g for g, ok in zip(names, present, strict=True) if not ok][:10],
        }
    return out


def check_panel_coverage(
    coverage: dict[str, dict[str, Any]],
    *,
    what: str = "query",
    warn_below: float = WARN_BELOW,
    refuse_below: float = REFUSE_BELOW,
) -> None:
    """Refuse a query that lacks almost all of every reference panel; warn when it lacks part of one.

    One view is enough to annotate with: a human query of 765 genes against a mouse reference has 28% of the
    text panel and 5% of the expression panel, and its B cells, NK cells and monocytes are still found
    (``tests/annotator/test_mouse_real.py``). So the query is refused only when its best-covered view is
    under ``refuse_below``; every view under ``warn_below`` is warned about.

    Raises
    ------
    InputError
        When, for every view, the query has less than ``refuse_below`` of the panel.

    Warns
    -----
    PanelCoverageWarning
        When, for some view, it has less than ``warn_below`` of the panel.
    """
    views = {view: c for view, c in coverage.items() if c["panel"]}

    def head(view: str, c: dict[str, Any]) -> str:
        return (
            f"the {what} has {c['present']} of the reference's {c['panel']} {_VIEWS[view]} "
            f"({c['fraction']:.0%}; missing e.g. {', '.join(c['missing_examples'][:5])})"
        )

    if views and max(c["fraction"] for c in views.values()) < refuse_below:
        view, c = max(views.items(), key=lambda vc: vc[1]["fraction"])
        msg = (
            f"{head(view, c)}: under {refuse_below:.0%}, its labels would be guesses; check the species and the "
            "gene names (--gene-column), or annotate against a reference measured on the same genes."
        )
        raise InputError(msg)
    for view, c in views.items():
        if c["fraction"] < warn_below:
            warnings.warn(
                f"{head(view, c)}: under {warn_below:.0%}, accuracy drops; a reference built on the query's genes "
                "fits better.",
                PanelCoverageWarning,
                stacklevel=3,
            )
