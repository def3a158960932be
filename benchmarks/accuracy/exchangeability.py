"""Issue 14: the calibration's cross-fitted scores beside the scores ``annotate`` computes, per reference size.

For each reference size, compares the distribution of every novelty evidence component (mean cosine of the
calibration's ``k`` neighbours, squared Mahalanobis distance to the winner's mean, the novelty p-value, the
calibrated probability) between

* ``cal``: the cross-fitted calibration scores stored with the reference (the conformal tables), and beside
  them the same cells' in-sample scores (the tables a query that is a stored reference cell is judged against),
* ``held``: ``annotate``'s scores of reference-like cells never in the reference (a seeded stratified 20%),
* ``own``: ``annotate``'s scores of the reference's own cells,

and prints the share of ``held`` and ``own`` cells called "Unknown" at ``--alpha`` (expected: about alpha).
Settings: ``syn75`` / ``syn300`` (the scale benchmark's synthetic cells, 4 labels x 75 / 300 reference cells,
hybrid mode), ``pbmc68k`` (pbmc68k_reduced's 80% split), ``voigt500`` (a seeded 625-cell subsample of
voigt-coarse, 80% of it as the reference), ``voigt-coarse`` (its 80% split).

Usage::

    OMP_NUM_THREADS=1 python -m benchmarks.accuracy.exchangeability --settings syn75,syn300,pbmc68k,voigt500 \
        [--encoder random:384] [--alpha 0.01] [--seed 0]
"""

from __future__ import annotations

import argparse
import warnings
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

__all__ = ["SETTINGS", "compare", "main"]

SETTINGS = ("syn75", "syn300", "pbmc68k", "voigt500", "voigt-coarse")
QUANTILES = (0.01, 0.1, 0.5, 0.9)


def _plain(adata: ad.AnnData, labels: np.ndarray | None = None) -> ad.AnnData:
    obs = pd.DataFrame(index=adata.obs_names)
    if labels is not None:
        obs["label"] = np.asarray(labels).astype(str)
    return ad.AnnData(X=adata.X, obs=obs, var=pd.DataFrame(index=adata.var_names))


def _scores(cells: ad.AnnData, *, store: Any, name: str, alpha: float) -> dict[str, np.ndarray]:
    """``annotate``'s evidence for ``cells``: the neighbours it searched and the PCA scores it encoded."""
    from annotator import annotate
    from indexer import Reference
    from indexer.cells import decide, encode_cells, mahalanobis

    ref = Reference.open(store, name)
    cal = ref.artifacts.calibration
    assert cal is not None
    enc, _ = encode_cells(_plain(cells), spec=ref.record.spec, store=store, artifacts=ref.artifacts, what="query")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = annotate(_plain(cells), reference=name, store=store, k=max(cal.k, 30), unknown_alpha=alpha)
    names = np.asarray(cal.labels)
    labs = np.asarray(res.neighbour_labels).astype(str)
    codes = np.where(labs == "", -1, np.searchsorted(names, labs))
    sims = np.asarray(res.neighbour_scores, dtype=np.float64)
    d = decide(codes, sims, calibration=cal, alpha=alpha, pca_scores=enc.pca_scores)
    np.testing.assert_allclose(d.novelty_p, res.novelty_p)  # the same decision annotate made
    out = {
        "neighbours": np.nanmean(sims[:, : cal.k], axis=1),
        "p": d.novelty_p,
        "probability": d.probability,
        "unknown": np.asarray(res.labels).astype(str) == "Unknown",
        "best": sims[:, 0],
        "second": sims[:, 1],
    }
    if cal.uses_pca:
        assert cal.means is not None
        assert cal.precision is not None
        assert enc.pca_scores is not None
        out["mahalanobis"] = mahalanobis(enc.pca_scores, d.winner, means=cal.means, precision=cal.precision)
    return out


def compare(
    reference: ad.AnnData,
    labels: np.ndarray,
    held: ad.AnnData,
    *,
    mode: str = "hybrid",
    encoder: str,
    alpha: float,
    species: str = "human",
) -> dict[str, Any]:
    """Build ``reference`` in memory and return the three score sets and the rejection shares."""
    from indexer import Reference, build_reference, open_store
    from schemas import CellVectorSpec

    spec = CellVectorSpec(mode=mode, encoder=encoder, species=species)  # type: ignore[arg-type]
    with open_store(":memory:") as store:
        build_reference(_plain(reference, labels), store=store, name="x", label_key="label", spec=spec)
        cal = Reference.open(store, "x").artifacts.calibration
        assert cal is not None
        table = {"neighbours": cal.cal_neighbours}
        if cal.cal_pca is not None:
            table["mahalanobis"] = -cal.cal_pca
        # In-sample scores of the same cells (what a query that is a stored cell is judged against).
        in_sample = {}
        if getattr(cal, "own_neighbours", None) is not None:
            in_sample["neighbours"] = cal.own_neighbours
        if getattr(cal, "own_pca", None) is not None:
            in_sample["mahalanobis"] = -cal.own_pca
        held_s = _scores(held, store=store, name="x", alpha=alpha)
        own_s = _scores(reference, store=store, name="x", alpha=alpha)
    return {
        "n_ref": reference.n_obs,
        "n_held": held.n_obs,
        "k": cal.k,
        "pca_components": None if cal.means is None else int(cal.means.shape[1]),
        "cal": table,
        "cal_in_sample": in_sample,
        "held": held_s,
        "own": own_s,
    }


def _setting(name: str, *, seed: int) -> tuple[ad.AnnData, np.ndarray, ad.AnnData, str, str]:
    from indexer.cells import stratified_split

    if name.startswith("syn"):
        from benchmarks.scale._cells import synthetic_cells
        from benchmarks.scale._scale import pick_genes

        per = int(name[3:])
        cells = synthetic_cells(int(per * 4 / 0.8), pick_genes(300), n_classes=4, program_size=10, n_shared=10, seed=5)
        y = cells.obs["cell_type"].astype(str).to_numpy()
        species = "human"
    elif name == "pbmc68k":
        from benchmarks.accuracy._datasets import load_pbmc68k

        ds = load_pbmc68k()
        cells, y, species = ds.adata, ds.adata.obs[ds.label_key].astype(str).to_numpy(), ds.species
    else:
        from benchmarks.accuracy._datasets import load_voigt

        ds = load_voigt("coarse")
        cells, y, species = ds.adata, ds.adata.obs[ds.label_key].astype(str).to_numpy(), ds.species
        if name == "voigt500":
            sub = np.random.default_rng(seed).choice(y.size, size=625, replace=False)
            cells, y = cells[sub], y[sub]
    r, h = stratified_split(y, test_size=0.2, seed=seed)
    return cells[r], y[r], cells[h], species, "hybrid"


def _q(x: np.ndarray) -> str:
    x = np.asarray(x, dtype=np.float64)
    return " / ".join(f"{v:.3f}" for v in np.nanquantile(x, QUANTILES))


def main(argv: list[str] | None = None) -> int:
    """Run the comparison (see the module docstring) and print one markdown table per setting."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--settings", default="syn75,syn300,pbmc68k,voigt500")
    p.add_argument("--encoder", default="random:384", help="Real data; synthetic settings use random:32.")
    p.add_argument("--alpha", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for name in args.settings.split(","):
        ref, y, held, species, mode = _setting(name, seed=args.seed)
        enc = "random:32" if name.startswith("syn") else args.encoder
        r = compare(ref, y, held, mode=mode, encoder=enc, alpha=args.alpha, species=species)
        print(f"\n### {name}: {r['n_ref']} reference cells, {r['n_held']} held out, k={r['k']}, "
              f"Mahalanobis on {r['pca_components']} PCA components ({enc})\n")
        print(f"| score (quantiles {', '.join(f'{q:g}' for q in QUANTILES)}) | cal | cal, in-sample | held | own |")
        print("|---|---|---|---|---|")
        for comp in ("neighbours", "mahalanobis", "p", "probability"):
            if comp not in r["held"]:
                continue
            cal = _q(r["cal"][comp]) if comp in r["cal"] else "–"
            ins = _q(r["cal_in_sample"][comp]) if comp in r["cal_in_sample"] else "–"
            print(f"| {comp} | {cal} | {ins} | {_q(r['held'][comp])} | {_q(r['own'][comp])} |")
        held_u, own_u = r["held"]["unknown"].mean(), r["own"]["unknown"].mean()
        print(f"\nUnknown at alpha {args.alpha:g}: held-out {held_u:.3f}, own cells {own_u:.3f}; "
              f"held-out p < 0.1: {np.mean(r['held']['p'] < 0.1):.3f}. Largest similarity to another cell: "
              f"held-out {np.max(r['held']['best']):.5f}, own cells {np.max(r['own']['second']):.5f}; "
              f"own cells' smallest best similarity {np.min(r['own']['best']):.6f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
